//! AK/SK request signatures as Huawei Cloud's SDKs make them (`SDK-HMAC-SHA256`), verified from
//! what came over the wire. Pure: no I/O; the secret is handed in by who looked the key up.
//!
//! ```text
//! canonical request = METHOD \n canonical URI \n canonical query \n canonical headers \n
//!                     signed headers \n hex(sha256(body))   (or the X-Sdk-Content-Sha256 value
//!                                                           UNSIGNED-PAYLOAD)
//! string to sign    = SDK-HMAC-SHA256 \n X-Sdk-Date \n hex(sha256(canonical request))
//! signature         = hex(hmac_sha256(secret, string to sign))
//! Authorization: SDK-HMAC-SHA256 Access=<ak>, SignedHeaders=<h1;h2>, Signature=<hex>
//! ```
//!
//! The canonical URI is the path percent-decoded, split at `/`, each segment encoded again (only
//! `A-Z a-z 0-9 - _ . ~` left as they are), ending in `/`; the query's pairs are decoded, sorted
//! by key then value, and encoded the same way; each signed header is `name:value` with the name
//! in lower case and the value trimmed. An empty body hashes as empty even when declared
//! unsigned.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub const ALGORITHM: &str = "SDK-HMAC-SHA256";
/// The header carrying the signing time, `YYYYMMDDTHHMMSSZ`.
pub const DATE_HEADER: &str = "x-sdk-date";
/// The header that, set to [`UNSIGNED_PAYLOAD`], leaves the body out of the signature.
pub const CONTENT_SHA256_HEADER: &str = "x-sdk-content-sha256";
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// `hex(sha256(""))`: the payload hash of a request without a body.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// How far the signing time may be from the server's clock, either way.
pub const MAX_SKEW_SECS: i64 = 15 * 60;
/// Headers that, when sent, must be among the signed ones.
pub const SCOPE_HEADERS: [(&str, &str); 3] = [
    ("x-project-id", "X-Project-Id"),
    ("x-domain-id", "X-Domain-Id"),
    ("x-security-token", "X-Security-Token"),
];
/// Longest `Authorization` value considered; anything longer is refused before any work.
pub const MAX_AUTHORIZATION_LEN: usize = crate::limits::AUTHORIZATION_BYTES;
/// Most headers a signature may name.
pub const MAX_SIGNED_HEADERS: usize = crate::limits::SIGNED_HEADERS;

/// What the `Authorization` header of a signed request says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedAuth {
    pub access: String,
    /// Lower-case names, as listed.
    pub signed_headers: Vec<String>,
    /// The signature's bytes.
    pub signature: Vec<u8>,
}

/// Why a signed request is not authentic. Every one is the same 401 to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("malformed SDK-HMAC-SHA256 Authorization header")]
    Malformed,
    #[error("the signed headers leave out {0}")]
    Unsigned(&'static str),
    #[error("signed header {0} is missing or not text")]
    MissingHeader(String),
    #[error("X-Sdk-Date is not YYYYMMDDTHHMMSSZ")]
    BadDate,
    #[error("X-Sdk-Date is {0} s away from the server's clock (at most {MAX_SKEW_SECS} s)")]
    Skew(i64),
    #[error("the signature does not match")]
    Mismatch,
}

/// Whether an `Authorization` value is an AK/SK signature (and not, say, a bearer token).
pub fn is_signed(authorization: &str) -> bool {
    authorization
        .get(..ALGORITHM.len() + 1)
        .is_some_and(|p| p.eq_ignore_ascii_case(&format!("{ALGORITHM} ")))
}

/// Parses `SDK-HMAC-SHA256 Access=..., SignedHeaders=..., Signature=...` (any order, spaces
/// after the commas optional).
pub fn parse_authorization(v: &str) -> Result<SignedAuth, SignError> {
    if v.len() > MAX_AUTHORIZATION_LEN || !is_signed(v) {
        return Err(SignError::Malformed);
    }
    let (mut access, mut headers, mut signature) = (None, None, None);
    for part in v[ALGORITHM.len() + 1..].split(',') {
        let (k, val) = part.trim().split_once('=').ok_or(SignError::Malformed)?;
        let slot = match k {
            "Access" => &mut access,
            "SignedHeaders" => &mut headers,
            "Signature" => &mut signature,
            _ => return Err(SignError::Malformed),
        };
        if slot.replace(val).is_some() {
            return Err(SignError::Malformed);
        }
    }
    let (Some(access), Some(headers), Some(signature)) = (access, headers, signature) else {
        return Err(SignError::Malformed);
    };
    if access.is_empty() || access.len() > 128 || headers.is_empty() {
        return Err(SignError::Malformed);
    }
    let signed_headers: Vec<String> = headers.split(';').map(str::to_ascii_lowercase).collect();
    if signed_headers.len() > MAX_SIGNED_HEADERS || signed_headers.iter().any(|h| h.is_empty()) {
        return Err(SignError::Malformed);
    }
    Ok(SignedAuth {
        access: access.to_string(),
        signed_headers,
        signature: hex_decode(signature).ok_or(SignError::Malformed)?,
    })
}

/// A request as it came over the wire, for checking its signature.
pub struct WireRequest<'a> {
    pub method: &'a str,
    /// The path as sent (percent-encoded), before any routing rewrote it.
    pub path: &'a str,
    /// The query as sent, without `?`.
    pub query: &'a str,
    /// The value of a header by lower-case name (the first, if sent more than once).
    pub header: &'a dyn Fn(&str) -> Option<&'a str>,
    /// `hex(sha256(body))` ([`EMPTY_SHA256`] for no body), or `None` when the body was not read
    /// (then it must be declared [`UNSIGNED_PAYLOAD`]).
    pub payload_sha256: Option<&'a str>,
}

/// A signature checked up to the secret: everything about the request that does not need the
/// key. [`Checked::verify`] finishes with the secret.
#[derive(Debug)]
pub struct Checked {
    pub auth: SignedAuth,
    /// Seconds since the epoch of `X-Sdk-Date`.
    pub signed_at: i64,
    /// What the signature may be over: one string, or two when the query repeats a key with
    /// values whose order as sent differs from their order as text (see [`canonical_queries`]).
    strings_to_sign: Vec<String>,
}

impl Checked {
    /// Whether `secret` made the signature (in constant time).
    pub fn verify(&self, secret: &[u8]) -> Result<(), SignError> {
        let mut matched = false;
        for s in &self.strings_to_sign {
            let mut mac =
                Hmac::<Sha256>::new_from_slice(secret).map_err(|_| SignError::Mismatch)?;
            mac.update(s.as_bytes());
            matched |= mac.verify_slice(&self.auth.signature).is_ok();
        }
        matched.then_some(()).ok_or(SignError::Mismatch)
    }
}

/// Checks a signed request's form and time (`now`: seconds since the epoch) and builds the
/// string its signature must be over.
pub fn check(authorization: &str, req: &WireRequest<'_>, now: i64) -> Result<Checked, SignError> {
    let auth = parse_authorization(authorization)?;
    if !auth.signed_headers.iter().any(|h| h == DATE_HEADER) {
        return Err(SignError::Unsigned("X-Sdk-Date"));
    }
    // The headers that say on whose behalf and where a request acts must be signed when sent,
    // or a captured request could be sent again for another project.
    for (h, name) in SCOPE_HEADERS {
        if (req.header)(h).is_some() && !auth.signed_headers.iter().any(|s| s == h) {
            return Err(SignError::Unsigned(name));
        }
    }
    let date = (req.header)(DATE_HEADER).ok_or(SignError::MissingHeader(DATE_HEADER.into()))?;
    let signed_at = parse_date(date).ok_or(SignError::BadDate)?;
    if (now - signed_at).abs() > MAX_SKEW_SECS {
        return Err(SignError::Skew(now - signed_at));
    }
    let payload = match (req.payload_sha256, (req.header)(CONTENT_SHA256_HEADER)) {
        (Some(EMPTY_SHA256), _) => EMPTY_SHA256,
        (_, Some(UNSIGNED_PAYLOAD)) => UNSIGNED_PAYLOAD,
        (Some(h), _) => h,
        (None, _) => return Err(SignError::Unsigned("the body (too large to hash)")),
    };
    if payload == UNSIGNED_PAYLOAD
        && !auth
            .signed_headers
            .iter()
            .any(|h| h == CONTENT_SHA256_HEADER)
    {
        return Err(SignError::Unsigned("X-Sdk-Content-Sha256"));
    }
    let mut canonical_headers = String::new();
    for h in &auth.signed_headers {
        let v = (req.header)(h).ok_or_else(|| SignError::MissingHeader(h.clone()))?;
        canonical_headers.push_str(h);
        canonical_headers.push(':');
        canonical_headers.push_str(v.trim());
        canonical_headers.push('\n');
    }
    let uri = canonical_uri(req.path);
    let signed = auth.signed_headers.join(";");
    let strings_to_sign = canonical_queries(req.query)
        .iter()
        .map(|query| {
            let canonical = format!(
                "{}\n{uri}\n{query}\n{canonical_headers}\n{signed}\n{payload}",
                req.method.to_ascii_uppercase(),
            );
            format!("{ALGORITHM}\n{date}\n{}", sha256_hex(canonical.as_bytes()))
        })
        .collect();
    Ok(Checked {
        auth,
        signed_at,
        strings_to_sign,
    })
}

/// Signs a request the way the SDK does (for tests and benchmarks): the `Authorization` value.
pub fn sign(
    access: &str,
    secret: &[u8],
    req: &WireRequest<'_>,
    signed_headers: &[&str],
) -> Option<String> {
    let placeholder = format!(
        "{ALGORITHM} Access={access}, SignedHeaders={}, Signature=00",
        signed_headers.join(";")
    );
    let date = (req.header)(DATE_HEADER).and_then(parse_date)?;
    let checked = check(&placeholder, req, date).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    mac.update(checked.strings_to_sign.first()?.as_bytes());
    let sig = hex(&mac.finalize().into_bytes());
    Some(format!(
        "{ALGORITHM} Access={access}, SignedHeaders={}, Signature={sig}",
        signed_headers.join(";")
    ))
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// `YYYYMMDDTHHMMSSZ` as seconds since the epoch.
pub fn parse_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let month = time::Month::try_from(u8::try_from(num(4..6)?).ok()?).ok()?;
    let date = time::Date::from_calendar_date(num(0..4)? as i32, month, num(6..8)? as u8).ok()?;
    let t = time::Time::from_hms(num(9..11)? as u8, num(11..13)? as u8, num(13..15)? as u8).ok()?;
    Some(
        time::PrimitiveDateTime::new(date, t)
            .assume_utc()
            .unix_timestamp(),
    )
}

/// Seconds since the epoch as `YYYYMMDDTHHMMSSZ`.
pub fn format_date(secs: i64) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp(secs).ok()?;
    Some(format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    ))
}

fn canonical_uri(path: &str) -> String {
    let mut out: String = percent_decode(path)
        .split(|&b| b == b'/')
        .map(encode)
        .collect::<Vec<_>>()
        .join("/");
    if !out.ends_with('/') {
        out.push('/');
    }
    out
}

/// The canonical query: pairs decoded, sorted by key, encoded. The SDK sorts the values of a
/// repeated key by their own type (numbers as numbers: 9, 10, 100) and sends them in that order,
/// while other signers sort them as text: the values of a key in the order sent come first, then,
/// if it differs, in text order.
fn canonical_queries(query: &str) -> Vec<String> {
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    let join = |pairs: &[(Vec<u8>, Vec<u8>)]| {
        pairs
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    };
    // Stable: equal keys keep the order they were sent in.
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    let as_sent = join(&pairs);
    pairs.sort();
    let as_text = join(&pairs);
    if as_text == as_sent {
        vec![as_sent]
    } else {
        vec![as_sent, as_text]
    }
}

/// `%XX` decoded (a `%` not followed by two hex digits stays as it is); `+` stays `+`.
fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex_val(b[i + 1]), hex_val(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Percent-encodes every byte but the unreserved ones, with upper-case hex.
fn encode(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    for &c in b {
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~') {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 128 {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(hex_val(p[0])? << 4 | hex_val(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_bad_ones_are_refused() {
        assert_eq!(parse_date("20261205T134235Z"), Some(1796478155));
        assert_eq!(format_date(1796478155).as_deref(), Some("20261205T134235Z"));
        for bad in [
            "20261305T134235Z",
            "2026-12-05T13:42",
            "20261205T134235",
            "2026120xT134235Z",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(canonical_uri("/v3/projects"), "/v3/projects/");
        assert_eq!(canonical_uri("/v3/projects/"), "/v3/projects/");
        assert_eq!(canonical_uri("/a%20b/c~d/e%2Af"), "/a%20b/c~d/e%2Af/");
        assert_eq!(canonical_uri("/x*y"), "/x%2Ay/");
        // Decoded before it is split, as the SDK does.
        assert_eq!(canonical_uri("/a%2Fb"), "/a/b/");
        assert_eq!(
            canonical_queries("b=2&a=1&a=%20x&c="),
            ["a=1&a=%20x&b=2&c=", "a=%20x&a=1&b=2&c="]
        );
        assert_eq!(
            canonical_queries("n=9&n=10&m"),
            ["m=&n=9&n=10", "m=&n=10&n=9"]
        );
        assert_eq!(canonical_queries("b=1&a=2"), ["a=2&b=1"]);
        assert_eq!(canonical_queries(""), [""]);
    }

    #[test]
    fn authorization_parses_and_rejects_junk() {
        let a = parse_authorization(
            "SDK-HMAC-SHA256 Access=AK1, SignedHeaders=content-type;x-sdk-date, Signature=0aff",
        )
        .unwrap();
        assert_eq!(a.access, "AK1");
        assert_eq!(a.signed_headers, ["content-type", "x-sdk-date"]);
        assert_eq!(a.signature, [0x0a, 0xff]);
        for bad in [
            "SDK-HMAC-SHA256 Access=AK1, SignedHeaders=x-sdk-date",
            "SDK-HMAC-SHA256 Access=AK1, Access=AK2, SignedHeaders=x, Signature=00",
            "SDK-HMAC-SHA256 Access=AK1, SignedHeaders=x, Signature=0g",
            "Bearer abc",
        ] {
            assert!(parse_authorization(bad).is_err(), "{bad}");
        }
    }
}
