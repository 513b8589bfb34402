//! The vendor's filter inputs (`eq in lt le ge gt`, `not`, `or`; fields in
//! one filter AND) and their evaluation. Inputs are first compiled, which
//! checks every date and reports the exact `argumentPath` of a bad one.

use async_graphql::{
    InputObject, InputValueError, InputValueResult, Scalar, ScalarType, Value, ID,
};
use jiff::civil::Date;

use crate::errors::{ApiError, ApiResult, Msg, PathSeg};
use crate::model::{parse_date, Reservation, Stay};

/// The vendor's `Date` (`YYYY-MM-DD`). The scalar accepts any string so that
/// a malformed date becomes a `validation` error with an `argumentPath`
/// (raised when the argument is used) rather than an uncategorised
/// coercion error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DateScalar(pub String);

#[Scalar(name = "Date")]
impl ScalarType for DateScalar {
    fn parse(value: Value) -> InputValueResult<Self> {
        match value {
            Value::String(s) => Ok(DateScalar(s)),
            other => Err(InputValueError::expected_type(other)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.clone())
    }
}

#[derive(InputObject, Clone, Debug, Default)]
pub struct IdFilter {
    pub eq: Option<ID>,
    #[graphql(name = "in")]
    pub in_: Option<Vec<ID>>,
}

#[derive(InputObject, Clone, Debug, Default)]
pub struct StringFilter {
    pub eq: Option<String>,
    #[graphql(name = "in")]
    pub in_: Option<Vec<String>>,
}

#[derive(InputObject, Clone, Debug, Default)]
pub struct DateFilter {
    pub lt: Option<DateScalar>,
    pub le: Option<DateScalar>,
    pub eq: Option<DateScalar>,
    pub ge: Option<DateScalar>,
    pub gt: Option<DateScalar>,
}

#[derive(InputObject, Clone, Debug, Default)]
pub struct RoomStayFilter {
    pub id: Option<IdFilter>,
    #[graphql(name = "reservation_from")]
    pub reservation_from: Option<DateFilter>,
    #[graphql(name = "reservation_to")]
    pub reservation_to: Option<DateFilter>,
    pub not: Option<Box<RoomStayFilter>>,
    pub or: Option<Vec<RoomStayFilter>>,
}

#[derive(InputObject, Clone, Debug, Default)]
pub struct ReservationFilter {
    /// The guide filters reservations by `code` only: an assumed extra.
    #[graphql(visible = "crate::schema::with_reservation_id_filter")]
    pub id: Option<IdFilter>,
    pub code: Option<StringFilter>,
    pub not: Option<Box<ReservationFilter>>,
    pub or: Option<Vec<ReservationFilter>>,
}

/// `eq` and `in` on a string-like field.
#[derive(Clone, Debug, Default)]
struct OneOf {
    eq: Option<String>,
    any_of: Option<Vec<String>>,
}

impl OneOf {
    fn matches(&self, value: &str) -> bool {
        self.eq.as_ref().is_none_or(|eq| eq == value)
            && self
                .any_of
                .as_ref()
                .is_none_or(|set| set.iter().any(|v| v == value))
    }
}

impl From<&IdFilter> for OneOf {
    fn from(f: &IdFilter) -> Self {
        OneOf {
            eq: f.eq.as_ref().map(|id| id.to_string()),
            any_of: f
                .in_
                .as_ref()
                .map(|ids| ids.iter().map(|id| id.to_string()).collect()),
        }
    }
}

impl From<&StringFilter> for OneOf {
    fn from(f: &StringFilter) -> Self {
        OneOf {
            eq: f.eq.clone(),
            any_of: f.in_.clone(),
        }
    }
}

#[derive(Clone, Debug, Default)]
struct DateRange {
    lt: Option<Date>,
    le: Option<Date>,
    eq: Option<Date>,
    ge: Option<Date>,
    gt: Option<Date>,
}

impl DateRange {
    fn compile(f: &DateFilter, path: &[PathSeg]) -> ApiResult<Self> {
        let date = |v: &Option<DateScalar>, op: &str| -> ApiResult<Option<Date>> {
            match v {
                None => Ok(None),
                Some(DateScalar(s)) => parse_date(s).map(Some).ok_or_else(|| {
                    let mut p = path.to_vec();
                    p.push(PathSeg::from(op));
                    ApiError::validation(Msg::InvalidDate(s.clone()), p)
                }),
            }
        };
        Ok(DateRange {
            lt: date(&f.lt, "lt")?,
            le: date(&f.le, "le")?,
            eq: date(&f.eq, "eq")?,
            ge: date(&f.ge, "ge")?,
            gt: date(&f.gt, "gt")?,
        })
    }

    fn matches(&self, d: Date) -> bool {
        self.lt.is_none_or(|x| d < x)
            && self.le.is_none_or(|x| d <= x)
            && self.eq.is_none_or(|x| d == x)
            && self.ge.is_none_or(|x| d >= x)
            && self.gt.is_none_or(|x| d > x)
    }
}

fn child(path: &[PathSeg], seg: impl Into<PathSeg>) -> Vec<PathSeg> {
    let mut p = path.to_vec();
    p.push(seg.into());
    p
}

/// A checked `RoomStayFilter`. Its `Debug` form is stable and is what
/// cursors are bound to.
#[derive(Clone, Debug, Default)]
pub(crate) struct StayQuery {
    id: Option<OneOf>,
    from: Option<DateRange>,
    to: Option<DateRange>,
    not: Option<Box<StayQuery>>,
    /// `or: []` matches nothing (the empty disjunction).
    or: Option<Vec<StayQuery>>,
}

impl StayQuery {
    pub fn compile(f: &RoomStayFilter, path: &[PathSeg]) -> ApiResult<Self> {
        Ok(StayQuery {
            id: f.id.as_ref().map(OneOf::from),
            from: f
                .reservation_from
                .as_ref()
                .map(|d| DateRange::compile(d, &child(path, "reservation_from")))
                .transpose()?,
            to: f
                .reservation_to
                .as_ref()
                .map(|d| DateRange::compile(d, &child(path, "reservation_to")))
                .transpose()?,
            not: f
                .not
                .as_ref()
                .map(|n| StayQuery::compile(n, &child(path, "not")).map(Box::new))
                .transpose()?,
            or: f
                .or
                .as_ref()
                .map(|alts| {
                    let or_path = child(path, "or");
                    alts.iter()
                        .enumerate()
                        .map(|(i, a)| StayQuery::compile(a, &child(&or_path, i)))
                        .collect()
                })
                .transpose()?,
        })
    }

    pub fn matches(&self, s: &Stay) -> bool {
        self.id.as_ref().is_none_or(|f| f.matches(&s.id))
            && self.from.as_ref().is_none_or(|f| f.matches(s.from))
            && self.to.as_ref().is_none_or(|f| f.matches(s.to))
            && self.not.as_ref().is_none_or(|f| !f.matches(s))
            && self
                .or
                .as_ref()
                .is_none_or(|alts| alts.iter().any(|f| f.matches(s)))
    }
}

/// A checked `ReservationFilter`.
#[derive(Clone, Debug, Default)]
pub(crate) struct ReservationQuery {
    id: Option<OneOf>,
    code: Option<OneOf>,
    not: Option<Box<ReservationQuery>>,
    or: Option<Vec<ReservationQuery>>,
}

impl ReservationQuery {
    pub fn compile(f: &ReservationFilter) -> Self {
        ReservationQuery {
            id: f.id.as_ref().map(OneOf::from),
            code: f.code.as_ref().map(OneOf::from),
            not: f
                .not
                .as_ref()
                .map(|n| Box::new(ReservationQuery::compile(n))),
            or: f
                .or
                .as_ref()
                .map(|alts| alts.iter().map(ReservationQuery::compile).collect()),
        }
    }

    pub fn matches(&self, r: &Reservation) -> bool {
        self.id.as_ref().is_none_or(|f| f.matches(&r.id))
            && self.code.as_ref().is_none_or(|f| f.matches(&r.code))
            && self.not.as_ref().is_none_or(|f| !f.matches(r))
            && self
                .or
                .as_ref()
                .is_none_or(|alts| alts.iter().any(|f| f.matches(r)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::arg_path;

    fn stay(id: &str, from: &str, to: &str) -> Stay {
        Stay {
            id: id.into(),
            reservation_id: "r".into(),
            room_setup_id: "101".into(),
            from: parse_date(from).unwrap(),
            to: parse_date(to).unwrap(),
            key_id: None,
        }
    }

    fn date(s: &str) -> Option<DateScalar> {
        Some(DateScalar(s.into()))
    }

    #[test]
    fn overlap_window_as_in_the_guide() {
        let f = RoomStayFilter {
            reservation_from: Some(DateFilter {
                le: date("2026-02-05"),
                ..Default::default()
            }),
            reservation_to: Some(DateFilter {
                gt: date("2026-01-30"),
                ..Default::default()
            }),
            ..Default::default()
        };
        let q = StayQuery::compile(&f, &[PathSeg::from("filter")]).unwrap();
        assert!(q.matches(&stay("1", "2026-01-29", "2026-01-31")));
        assert!(q.matches(&stay("2", "2026-02-05", "2026-02-07")));
        assert!(!q.matches(&stay("3", "2026-01-28", "2026-01-30")));
        assert!(!q.matches(&stay("4", "2026-02-06", "2026-02-08")));
    }

    #[test]
    fn not_or_and_in() {
        let f = RoomStayFilter {
            or: Some(vec![
                RoomStayFilter {
                    id: Some(IdFilter {
                        eq: Some("1".into()),
                        in_: None,
                    }),
                    ..Default::default()
                },
                RoomStayFilter {
                    id: Some(IdFilter {
                        eq: None,
                        in_: Some(vec!["2".into(), "3".into()]),
                    }),
                    ..Default::default()
                },
            ]),
            not: Some(Box::new(RoomStayFilter {
                id: Some(IdFilter {
                    eq: Some("3".into()),
                    in_: None,
                }),
                ..Default::default()
            })),
            ..Default::default()
        };
        let q = StayQuery::compile(&f, &[]).unwrap();
        let ids: Vec<_> = ["1", "2", "3", "4"]
            .into_iter()
            .filter(|id| q.matches(&stay(id, "2026-01-01", "2026-01-02")))
            .collect();
        assert_eq!(ids, ["1", "2"]);
        let empty_or = RoomStayFilter {
            or: Some(vec![]),
            ..Default::default()
        };
        assert!(!StayQuery::compile(&empty_or, &[]).unwrap().matches(&stay(
            "1",
            "2026-01-01",
            "2026-01-02"
        )));
    }

    #[test]
    fn bad_date_has_its_path() {
        let f = RoomStayFilter {
            or: Some(vec![
                RoomStayFilter::default(),
                RoomStayFilter {
                    reservation_to: Some(DateFilter {
                        ge: date("2026-2-1"),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        let err = StayQuery::compile(&f, &[PathSeg::from("filter")]).unwrap_err();
        assert_eq!(
            err.argument_path,
            Some(arg_path!["filter", "or", 1usize, "reservation_to", "ge"])
        );
    }

    #[test]
    fn dates_are_strict() {
        assert!(parse_date("2026-02-28").is_some());
        for bad in [
            "2026-02-30",
            "2026-2-01",
            "26-02-01",
            "2026-02-01T00:00:00",
            "２０２６-02-01",
            "",
        ] {
            assert!(parse_date(bad).is_none(), "{bad}");
        }
    }
}
