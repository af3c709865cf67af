//! Where a server's disks live. The guests that run them are `stratus-driver`'s, reached through
//! [`crate::guests::Guests`].

/// Where a server's root disk lives under the disks directory.
pub fn root_disk_of(server: &str) -> String {
    format!("servers/{server}/disk")
}
