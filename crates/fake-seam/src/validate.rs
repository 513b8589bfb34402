//! Request schema validation, as Seam's zod schemas do it: every issue of a
//! body is collected (not just the first), unknown fields are ignored
//! (zod strips them), and the answer is 400 `invalid_input` whose
//! `validation_errors` is zod's `format()` tree:
//! `{"_errors": [], "starts_at": {"_errors": ["Invalid datetime"]}}`.
//! Each route reads its fields through [`Obj`] into typed values and calls
//! [`Validator::finish`] before touching any state.

use jiff::Timestamp;
use serde_json::{json, Map, Value};

use crate::errors::ApiError;
use crate::ids::is_uuid;

/// A field that may be absent, explicitly `null`, or set. Updates need the
/// difference: `"ends_at": null` clears the end, a missing one keeps it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Field<T> {
    Absent,
    Null,
    Set(T),
}

impl<T> Field<T> {
    /// Absent and null both read as "not given".
    pub fn value(self) -> Option<T> {
        match self {
            Field::Set(v) => Some(v),
            Field::Absent | Field::Null => None,
        }
    }
}

/// The issues found so far.
#[derive(Default)]
pub(crate) struct Validator {
    issues: Vec<(Vec<String>, String)>,
}

impl Validator {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn issue(&mut self, path: Vec<String>, message: impl Into<String>) {
        self.issues.push((path, message.into()));
    }

    pub fn is_clean(&self) -> bool {
        self.issues.is_empty()
    }

    /// `Err(invalid_input)` if anything was wrong.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.issues.is_empty() {
            return Ok(());
        }
        let mut tree = json!({ "_errors": [] });
        for (path, message) in &self.issues {
            insert(&mut tree, path, message);
        }
        let message = self
            .issues
            .iter()
            .map(|(path, message)| {
                if path.is_empty() {
                    message.clone()
                } else {
                    format!("{}: {message}", path.join("."))
                }
            })
            .collect::<Vec<_>>()
            .join("; ");
        Err(ApiError::validation(message, tree))
    }
}

/// Adds `message` to the `_errors` of the node at `path`, creating nodes.
fn insert(node: &mut Value, path: &[String], message: &str) {
    let Some(map) = node.as_object_mut() else {
        return;
    };
    match path.split_first() {
        None => {
            if let Some(Value::Array(list)) = map.get_mut("_errors") {
                list.push(Value::String(message.to_string()));
            }
        }
        Some((head, rest)) => {
            let child = map
                .entry(head.clone())
                .or_insert_with(|| json!({ "_errors": [] }));
            insert(child, rest, message);
        }
    }
}

/// zod's name of a JSON value's type, for "Expected string, received number".
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// What a string field must look like.
#[derive(Clone, Copy)]
pub(crate) struct Str {
    pub required: bool,
    pub nullable: bool,
    pub min_len: usize,
    pub max_len: Option<usize>,
    pub uuid: bool,
}

impl Str {
    pub const OPTIONAL: Str = Str {
        required: false,
        nullable: false,
        min_len: 0,
        max_len: None,
        uuid: false,
    };
    pub const REQUIRED: Str = Str {
        required: true,
        ..Str::OPTIONAL
    };
    pub const NULLABLE: Str = Str {
        nullable: true,
        ..Str::OPTIONAL
    };
    pub const UUID: Str = Str {
        uuid: true,
        ..Str::OPTIONAL
    };
    pub const REQUIRED_UUID: Str = Str {
        required: true,
        uuid: true,
        ..Str::OPTIONAL
    };

    pub const fn non_empty(self) -> Str {
        Str { min_len: 1, ..self }
    }
}

/// One JSON object of a request body, at `path` within it.
#[derive(Clone)]
pub(crate) struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: Vec<String>,
}

impl<'a> Obj<'a> {
    pub fn root(map: &'a Map<String, Value>) -> Self {
        Obj {
            map,
            path: Vec::new(),
        }
    }

    pub fn path_of(&self, key: &str) -> Vec<String> {
        let mut p = self.path.clone();
        p.push(key.to_string());
        p
    }

    /// Present and not null.
    pub fn has(&self, key: &str) -> bool {
        !matches!(self.map.get(key), None | Some(Value::Null))
    }

    /// The raw members, for cursors bound to a query.
    pub fn map(&self) -> &'a Map<String, Value> {
        self.map
    }

    fn check_str(&self, v: &mut Validator, key: &str, s: &str, spec: Str) -> bool {
        let n = s.chars().count();
        if n < spec.min_len {
            v.issue(
                self.path_of(key),
                format!("String must contain at least {} character(s)", spec.min_len),
            );
            return false;
        }
        if let Some(max) = spec.max_len {
            if n > max {
                v.issue(
                    self.path_of(key),
                    format!("String must contain at most {max} character(s)"),
                );
                return false;
            }
        }
        if spec.uuid && !is_uuid(s) {
            v.issue(self.path_of(key), "Invalid uuid");
            return false;
        }
        true
    }

    /// A string member.
    pub fn string(&self, v: &mut Validator, key: &str, spec: Str) -> Field<String> {
        match self.map.get(key) {
            None => {
                if spec.required {
                    v.issue(self.path_of(key), "Required");
                }
                Field::Absent
            }
            Some(Value::Null) if spec.nullable => Field::Null,
            Some(Value::String(s)) => {
                if self.check_str(v, key, s, spec) {
                    Field::Set(s.clone())
                } else {
                    Field::Absent
                }
            }
            Some(other) => {
                v.issue(
                    self.path_of(key),
                    format!("Expected string, received {}", type_name(other)),
                );
                Field::Absent
            }
        }
    }

    /// An ISO 8601 instant.
    pub fn datetime(
        &self,
        v: &mut Validator,
        key: &str,
        required: bool,
        nullable: bool,
    ) -> Field<Timestamp> {
        let spec = Str {
            required,
            nullable,
            ..Str::OPTIONAL
        };
        match self.string(v, key, spec) {
            Field::Set(s) => match crate::time::parse(&s) {
                Some(ts) => Field::Set(ts),
                None => {
                    v.issue(self.path_of(key), "Invalid datetime");
                    Field::Absent
                }
            },
            Field::Null => Field::Null,
            Field::Absent => Field::Absent,
        }
    }

    /// One of `allowed`.
    pub fn one_of(
        &self,
        v: &mut Validator,
        key: &str,
        allowed: &[&str],
        required: bool,
    ) -> Option<String> {
        let spec = Str {
            required,
            ..Str::OPTIONAL
        };
        let s = self.string(v, key, spec).value()?;
        if allowed.contains(&s.as_str()) {
            return Some(s);
        }
        let expected = allowed
            .iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(" | ");
        v.issue(
            self.path_of(key),
            format!("Invalid enum value. Expected {expected}, received '{s}'"),
        );
        None
    }

    pub fn boolean(&self, v: &mut Validator, key: &str) -> Option<bool> {
        match self.map.get(key) {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(other) => {
                v.issue(
                    self.path_of(key),
                    format!("Expected boolean, received {}", type_name(other)),
                );
                None
            }
        }
    }

    /// A whole number greater than zero (pagination limits).
    pub fn positive_int(&self, v: &mut Validator, key: &str) -> Option<u64> {
        match self.map.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => {
                if let Some(i) = n.as_u64() {
                    if i == 0 {
                        v.issue(self.path_of(key), "Number must be greater than 0");
                        return None;
                    }
                    return Some(i);
                }
                if n.as_i64().is_some() {
                    v.issue(self.path_of(key), "Number must be greater than 0");
                    return None;
                }
                let f = n.as_f64().unwrap_or(f64::NAN);
                if f <= 0.0 {
                    v.issue(self.path_of(key), "Number must be greater than 0");
                } else {
                    v.issue(self.path_of(key), "Expected integer, received float");
                }
                None
            }
            Some(other) => {
                v.issue(
                    self.path_of(key),
                    format!("Expected number, received {}", type_name(other)),
                );
                None
            }
        }
    }

    /// An array of strings, each checked with `item`.
    pub fn strings(&self, v: &mut Validator, key: &str, item: Str) -> Option<Vec<String>> {
        let list = self.array(v, key, false)?;
        // Items are checked as members "0", "1", ... of the array's path.
        let items = Obj {
            map: self.map,
            path: self.path_of(key),
        };
        let mut out = Vec::with_capacity(list.len());
        let mut ok = true;
        for (i, value) in list.iter().enumerate() {
            let idx = i.to_string();
            match value {
                Value::String(s) if items.check_str(v, &idx, s, item) => out.push(s.clone()),
                Value::String(_) => ok = false,
                other => {
                    v.issue(
                        items.path_of(&idx),
                        format!("Expected string, received {}", type_name(other)),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    pub fn array(&self, v: &mut Validator, key: &str, required: bool) -> Option<&'a Vec<Value>> {
        match self.map.get(key) {
            None => {
                if required {
                    v.issue(self.path_of(key), "Required");
                }
                None
            }
            Some(Value::Array(a)) => Some(a),
            Some(other) => {
                v.issue(
                    self.path_of(key),
                    format!("Expected array, received {}", type_name(other)),
                );
                None
            }
        }
    }

    /// A nested object.
    pub fn object(&self, v: &mut Validator, key: &str, required: bool) -> Option<Obj<'a>> {
        match self.map.get(key) {
            None => {
                if required {
                    v.issue(self.path_of(key), "Required");
                }
                None
            }
            Some(Value::Object(m)) => Some(Obj {
                map: m,
                path: self.path_of(key),
            }),
            Some(other) => {
                v.issue(
                    self.path_of(key),
                    format!("Expected object, received {}", type_name(other)),
                );
                None
            }
        }
    }

    /// An array of objects; a non-object item is an issue at its index.
    pub fn objects(&self, v: &mut Validator, key: &str, required: bool) -> Option<Vec<Obj<'a>>> {
        let list = self.array(v, key, required)?;
        let mut out = Vec::with_capacity(list.len());
        for (i, value) in list.iter().enumerate() {
            let mut path = self.path_of(key);
            path.push(i.to_string());
            match value {
                Value::Object(m) => out.push(Obj { map: m, path }),
                other => v.issue(
                    path,
                    format!("Expected object, received {}", type_name(other)),
                ),
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: &Value) -> &Map<String, Value> {
        v.as_object().unwrap()
    }

    #[test]
    fn collects_every_issue_in_zod_format() {
        let body = json!({
            "access_grant_id": "nope",
            "starts_at": 5,
            "requested_access_methods": [{"mode": "pin"}, 3],
        });
        let o = Obj::root(obj(&body));
        let mut v = Validator::new();
        o.string(&mut v, "access_grant_id", Str::REQUIRED_UUID);
        o.datetime(&mut v, "starts_at", false, false);
        o.string(&mut v, "missing", Str::REQUIRED);
        for item in o.objects(&mut v, "requested_access_methods", true).unwrap() {
            item.one_of(&mut v, "mode", &["code", "card"], true);
        }
        let e = v.finish().unwrap_err();
        assert_eq!((e.status, e.kind.as_str()), (400, "invalid_input"));
        let tree = e.validation_errors.unwrap();
        assert_eq!(tree["access_grant_id"]["_errors"][0], "Invalid uuid");
        assert_eq!(
            tree["starts_at"]["_errors"][0],
            "Expected string, received number"
        );
        assert_eq!(tree["missing"]["_errors"][0], "Required");
        assert_eq!(
            tree["requested_access_methods"]["0"]["mode"]["_errors"][0],
            "Invalid enum value. Expected 'code' | 'card', received 'pin'"
        );
        assert_eq!(
            tree["requested_access_methods"]["1"]["_errors"][0],
            "Expected object, received number"
        );
        assert!(e.message.contains("access_grant_id: Invalid uuid"));
    }

    #[test]
    fn limits_must_be_positive_whole_numbers() {
        for (value, ok) in [
            (json!(1), true),
            (json!(0), false),
            (json!(-3), false),
            (json!(2.5), false),
            (json!("10"), false),
        ] {
            let body = json!({ "limit": value });
            let mut v = Validator::new();
            let got = Obj::root(obj(&body)).positive_int(&mut v, "limit");
            assert_eq!(got.is_some(), ok, "{body}");
            assert_eq!(v.is_clean(), ok, "{body}");
        }
    }
}
