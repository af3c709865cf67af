//! The states of servers, images, volumes, snapshots, image members and sagas: one enum each, with
//! one string form (the upstream one, as stored and as shown) or, for a server's power state,
//! Nova's number. Each converts to and from its form (`as_str`, `FromStr`, serde), and binds and
//! decodes as a column of the store directly.

use sqlx::error::BoxDynError;
use sqlx::{Any, Database, Decode, Encode, Type};

/// A stored or requested state name that is not one of its enum's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct UnknownState {
    pub kind: &'static str,
    pub value: String,
}

macro_rules! states {
    ($(
        $(#[$meta:meta])*
        $name:ident ($kind:literal) { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)* }
    )*) => {$(
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant,)*
        }

        impl $name {
            /// Every state, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The state's one string form.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownState;
            fn from_str(s: &str) -> Result<Self, UnknownState> {
                match s {
                    $($text => Ok($name::$variant),)*
                    _ => Err(UnknownState { kind: $kind, value: s.to_string() }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl Type<Any> for $name {
            fn type_info() -> <Any as Database>::TypeInfo {
                <str as Type<Any>>::type_info()
            }
        }

        impl<'q> Encode<'q, Any> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut <Any as Database>::ArgumentBuffer<'q>,
            ) -> Result<sqlx::encode::IsNull, BoxDynError> {
                <&str as Encode<'q, Any>>::encode(self.as_str(), buf)
            }
        }

        impl<'r> Decode<'r, Any> for $name {
            fn decode(value: <Any as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
                Ok(<String as Decode<'r, Any>>::decode(value)?.parse()?)
            }
        }
    )*};
}

states! {
    /// A server's `vm_state` (Nova's `nova.compute.vm_states`).
    VmState ("vm_state") {
        Active = "active",
        Building = "building",
        Stopped = "stopped",
        Paused = "paused",
        Suspended = "suspended",
        Error = "error",
        Deleted = "deleted",
    }

    /// A server's `task_state` while an operation runs on it (Nova's `task_states`).
    TaskState ("task_state") {
        Spawning = "spawning",
        BlockDeviceMapping = "block_device_mapping",
        Rebooting = "rebooting",
        PoweringOff = "powering-off",
        RebootingHard = "rebooting_hard",
        Rebuilding = "rebuilding",
        RebuildBlockDeviceMapping = "rebuild_block_device_mapping",
        RebuildSpawning = "rebuild_spawning",
        ImageSnapshot = "image_snapshot",
        ImageSnapshotPending = "image_snapshot_pending",
        ImagePendingUpload = "image_pending_upload",
        ImageUploading = "image_uploading",
        ImageBackup = "image_backup",
        Deleting = "deleting",
    }

    /// An image's `status` (Glance's).
    ImageStatus ("image status") {
        Queued = "queued",
        Saving = "saving",
        Uploading = "uploading",
        Importing = "importing",
        Active = "active",
        Deactivated = "deactivated",
        Killed = "killed",
        Deleted = "deleted",
        PendingDelete = "pending_delete",
    }

    /// A volume's `status` (Cinder's).
    VolumeStatus ("volume status") {
        Creating = "creating",
        Available = "available",
        InUse = "in-use",
        Error = "error",
    }

    /// A snapshot's `status` (Cinder's).
    SnapshotStatus ("snapshot status") {
        Creating = "creating",
        Available = "available",
        Error = "error",
    }

    /// An image member's `status`.
    MemberStatus ("member status") {
        Pending = "pending",
        Accepted = "accepted",
        Rejected = "rejected",
    }

    /// Where a saga is.
    SagaState ("saga state") {
        /// Running its steps forward.
        Running = "running",
        /// Undoing the steps that started, last first.
        Undoing = "undoing",
        Done = "done",
        Undone = "undone",
        /// An undo failed: waits for an operator.
        Stuck = "stuck",
    }

    /// Whether an access key (AK/SK) authenticates (Huawei IAM's `status`).
    AccessKeyStatus ("access key status") {
        Active = "active",
        Inactive = "inactive",
    }

    /// Where one step of a saga is.
    StepStatus ("step status") {
        Started = "started",
        Done = "done",
        Undone = "undone",
        UndoFailed = "undo_failed",
    }
}

impl VmState {
    /// Nova's status of a server in this state, before its task is looked at.
    pub const fn status(self) -> &'static str {
        match self {
            VmState::Active => "ACTIVE",
            VmState::Building => "BUILD",
            VmState::Stopped => "SHUTOFF",
            VmState::Paused => "PAUSED",
            VmState::Suspended => "SUSPENDED",
            VmState::Error => "ERROR",
            VmState::Deleted => "DELETED",
        }
    }
}

/// A new server's state.
impl Default for VmState {
    fn default() -> Self {
        VmState::Building
    }
}

impl TaskState {
    /// The tasks of a rebuild.
    pub const fn is_rebuild(self) -> bool {
        matches!(
            self,
            TaskState::Rebuilding
                | TaskState::RebuildBlockDeviceMapping
                | TaskState::RebuildSpawning
        )
    }
}

impl TaskState {
    /// The tasks of createImage and createBackup.
    pub const fn is_image(self) -> bool {
        matches!(
            self,
            TaskState::ImageSnapshot
                | TaskState::ImageSnapshotPending
                | TaskState::ImagePendingUpload
                | TaskState::ImageUploading
                | TaskState::ImageBackup
        )
    }
}

impl SagaState {
    /// The states in which a saga still has work to do.
    pub const LIVE: &'static [SagaState] = &[SagaState::Running, SagaState::Undoing];
}

/// A server's `power_state`, as Nova numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(into = "i64", try_from = "i64")]
pub enum PowerState {
    NoState,
    Running,
    Paused,
    Shutdown,
    Crashed,
    Suspended,
}

impl PowerState {
    pub const ALL: &'static [PowerState] = &[
        PowerState::NoState,
        PowerState::Running,
        PowerState::Paused,
        PowerState::Shutdown,
        PowerState::Crashed,
        PowerState::Suspended,
    ];

    /// Nova's number for the state.
    pub const fn code(self) -> i64 {
        match self {
            PowerState::NoState => 0,
            PowerState::Running => 1,
            PowerState::Paused => 3,
            PowerState::Shutdown => 4,
            PowerState::Crashed => 6,
            PowerState::Suspended => 7,
        }
    }
}

impl From<PowerState> for i64 {
    fn from(p: PowerState) -> i64 {
        p.code()
    }
}

impl TryFrom<i64> for PowerState {
    type Error = UnknownState;
    fn try_from(n: i64) -> Result<Self, UnknownState> {
        PowerState::ALL
            .iter()
            .copied()
            .find(|p| p.code() == n)
            .ok_or_else(|| UnknownState {
                kind: "power_state",
                value: n.to_string(),
            })
    }
}

impl Type<Any> for PowerState {
    fn type_info() -> <Any as Database>::TypeInfo {
        <i64 as Type<Any>>::type_info()
    }
}

impl<'q> Encode<'q, Any> for PowerState {
    fn encode_by_ref(
        &self,
        buf: &mut <Any as Database>::ArgumentBuffer<'q>,
    ) -> Result<sqlx::encode::IsNull, BoxDynError> {
        <i64 as Encode<'q, Any>>::encode(self.code(), buf)
    }
}

impl<'r> Decode<'r, Any> for PowerState {
    fn decode(value: <Any as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(PowerState::try_from(<i64 as Decode<'r, Any>>::decode(
            value,
        )?)?)
    }
}

/// A flag column (0 or 1, the store's portable boolean) as read into a `bool` field:
/// `#[sqlx(try_from = "Flag")]`.
pub struct Flag(bool);

impl From<Flag> for bool {
    fn from(f: Flag) -> bool {
        f.0
    }
}

impl Type<Any> for Flag {
    fn type_info() -> <Any as Database>::TypeInfo {
        <i64 as Type<Any>>::type_info()
    }
}

impl<'r> Decode<'r, Any> for Flag {
    fn decode(value: <Any as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Flag(<i64 as Decode<'r, Any>>::decode(value)? != 0))
    }
}

/// A JSON text column as read into a typed field (an object of properties or metadata, a list
/// of tags): `#[sqlx(try_from = "JsonText")]`. The store writes such fields with [`json_text`].
pub struct JsonText(String);

impl Type<Any> for JsonText {
    fn type_info() -> <Any as Database>::TypeInfo {
        <String as Type<Any>>::type_info()
    }
}

impl<'r> Decode<'r, Any> for JsonText {
    fn decode(value: <Any as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(JsonText(<String as Decode<'r, Any>>::decode(value)?))
    }
}

impl TryFrom<JsonText> for serde_json::Map<String, serde_json::Value> {
    type Error = serde_json::Error;
    fn try_from(t: JsonText) -> Result<Self, Self::Error> {
        serde_json::from_str(&t.0)
    }
}

impl TryFrom<JsonText> for Vec<String> {
    type Error = serde_json::Error;
    fn try_from(t: JsonText) -> Result<Self, Self::Error> {
        serde_json::from_str(&t.0)
    }
}

/// The column text of a typed JSON field.
pub fn json_text<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trips<T>(all: &[T], text: impl Fn(T) -> String)
    where
        T: Copy + PartialEq + std::fmt::Debug + std::str::FromStr + serde::Serialize,
        T: serde::de::DeserializeOwned,
        <T as std::str::FromStr>::Err: std::fmt::Debug,
    {
        let mut seen = std::collections::HashSet::new();
        for &s in all {
            let t = text(s);
            assert!(seen.insert(t.clone()), "{t} is the form of two states");
            assert_eq!(t.parse::<T>().unwrap(), s);
            let json = serde_json::to_value(s).unwrap();
            assert_eq!(json, serde_json::Value::String(t.clone()));
            assert_eq!(serde_json::from_value::<T>(json).unwrap(), s);
        }
        assert!("no-such-state".parse::<T>().is_err());
    }

    #[test]
    fn every_state_has_one_string_form_that_parses_back() {
        round_trips(VmState::ALL, |s| s.as_str().into());
        round_trips(TaskState::ALL, |s| s.as_str().into());
        round_trips(ImageStatus::ALL, |s| s.as_str().into());
        round_trips(VolumeStatus::ALL, |s| s.as_str().into());
        round_trips(SnapshotStatus::ALL, |s| s.as_str().into());
        round_trips(MemberStatus::ALL, |s| s.as_str().into());
        round_trips(SagaState::ALL, |s| s.as_str().into());
        round_trips(StepStatus::ALL, |s| s.as_str().into());
        round_trips(AccessKeyStatus::ALL, |s| s.as_str().into());
        assert_eq!(
            "Active".parse::<VmState>(),
            Err(UnknownState {
                kind: "vm_state",
                value: "Active".into()
            })
        );
    }

    #[test]
    fn power_states_are_novas_numbers_and_parse_back() {
        let codes: Vec<i64> = PowerState::ALL.iter().map(|p| p.code()).collect();
        assert_eq!(codes, [0, 1, 3, 4, 6, 7]);
        for &p in PowerState::ALL {
            assert_eq!(PowerState::try_from(p.code()), Ok(p));
            let json = serde_json::to_value(p).unwrap();
            assert_eq!(json, serde_json::json!(p.code()));
            assert_eq!(serde_json::from_value::<PowerState>(json).unwrap(), p);
        }
        assert!(PowerState::try_from(2).is_err());
    }
}
