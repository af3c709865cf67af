//! Time formats of the OpenStack APIs.

use time::OffsetDateTime;

fn at(micros: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// `YYYY-MM-DDThh:mm:ss.ffffffZ`, as Keystone writes token times.
pub fn micros_z(micros: i64) -> String {
    let t = at(micros);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// `YYYY-MM-DDThh:mm:ss.fffZ`, as Huawei Cloud writes job times.
pub fn millis_z(micros: i64) -> String {
    let mut s = micros_z(micros);
    // Drop the last three digits of the fraction (the string is ASCII).
    s.replace_range(23..26, "");
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats() {
        assert_eq!(
            super::millis_z(1_700_000_000_123_456),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(super::micros_z(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            super::micros_z(1_700_000_000_123_456),
            "2023-11-14T22:13:20.123456Z"
        );
    }
}
