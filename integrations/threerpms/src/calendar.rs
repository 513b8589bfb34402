//! Turns a hotel's dates into keysmith's instants: its time zone, check-in
//! and check-out times, today's date, and when a local time of day comes.
use jiff::{
    civil::{Date, Time},
    tz::TimeZone,
};
use keysmith_core::{Error, Result, Timestamp, Window};

use crate::{config::HotelConfig, errors::reasons};

/// A hotel's time zone and the times its stays begin and end.
#[derive(Clone, Debug)]
pub struct Calendar {
    time_zone: TimeZone,
    check_in: Time,
    check_out: Time,
}

fn config_error(field: &str, message: String) -> Error {
    Error::invalid_field(reasons::HOTEL_NOT_CONFIGURED, field, message)
}

impl Calendar {
    /// The hotel's calendar, refused when its time zone or times do not parse.
    pub fn of(config: &HotelConfig) -> Result<Self> {
        let time_zone = TimeZone::get(&config.time_zone)
            .map_err(|e| config_error("time_zone", format!("{:?}: {e}", config.time_zone)))?;
        let check_in: Time = config
            .check_in
            .parse()
            .map_err(|e| config_error("check_in", format!("{:?}: {e}", config.check_in)))?;
        let check_out: Time = config
            .check_out
            .parse()
            .map_err(|e| config_error("check_out", format!("{:?}: {e}", config.check_out)))?;
        Ok(Self {
            time_zone,
            check_in,
            check_out,
        })
    }

    /// The hotel's date at `now`.
    pub fn today(&self, now: Timestamp) -> Date {
        self.local(now).date()
    }

    /// The key window of a stay: from check-in on arrival to check-out on
    /// departure.
    pub fn window(&self, arrival: Date, departure: Date) -> Result<Window> {
        Ok(Window {
            starts_at: self.instant(arrival, self.check_in)?,
            ends_at: self.instant(departure, self.check_out)?,
        })
    }

    /// Time from `now` until the next occurrence of a local time of day.
    pub fn until_local_time(&self, now: Timestamp, at: Time) -> std::time::Duration {
        let now = self.local(now);
        let today = now.date().to_datetime(at).to_zoned(self.time_zone.clone());
        let next = match today {
            Ok(t) if t > now => Ok(t),
            _ => now
                .date()
                .tomorrow()
                .and_then(|d| d.to_datetime(at).to_zoned(self.time_zone.clone())),
        };
        next.ok()
            .and_then(|t| {
                std::time::Duration::try_from(t.timestamp().duration_since(now.timestamp())).ok()
            })
            .unwrap_or(std::time::Duration::from_secs(24 * 3600))
    }

    fn local(&self, at: Timestamp) -> jiff::Zoned {
        let ts = jiff::Timestamp::from_microsecond(at.as_micros())
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        ts.to_zoned(self.time_zone.clone())
    }

    fn instant(&self, date: Date, time: Time) -> Result<Timestamp> {
        let zoned = date
            .to_datetime(time)
            .to_zoned(self.time_zone.clone())
            .map_err(|e| Error::internal(format!("3RPMS date {date}: {e}")))?;
        Ok(Timestamp::from_micros(zoned.timestamp().as_microsecond()))
    }
}
