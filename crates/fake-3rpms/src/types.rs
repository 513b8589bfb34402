//! The schema as introspection shows it, read once at start-up: each
//! field's type, whether a list wraps it, and its arguments; each input
//! type's fields. `@chain`'s static check and the strict check below both
//! read it, so neither can drift from the schema.
//!
//! The strict check: a query that selects a field, passes an argument or
//! sets an input field that introspection does not show is refused with the
//! error a GraphQL server gives for an unknown field, before it runs. That
//! is what makes an assumed extra that is switched off absent rather than
//! merely hidden (async-graphql's `visible` hides from introspection only).

use std::collections::{HashMap, HashSet};

use async_graphql::parser::types::{
    ExecutableDocument, FragmentDefinition, OperationDefinition, Selection, SelectionSet,
};
use async_graphql::{Name, Positioned};
use async_graphql_value::Value as AstValue;
use serde_json::{Map, Value as Json};

use crate::errors::{ApiError, Msg};
use crate::schema::FakeSchema;

/// One field of an object or interface type.
#[derive(Clone, Debug)]
pub(crate) struct FieldInfo {
    /// The named type, lists and non-null unwrapped.
    pub ty: String,
    /// Whether a list wraps it.
    pub list: bool,
    /// Argument name to named type.
    args: HashMap<String, String>,
}

#[derive(Default)]
pub(crate) struct TypeInfo {
    fields: HashMap<(String, String), FieldInfo>,
    /// (input type, field) to the field's named type.
    input_fields: HashMap<(String, String), String>,
    input_types: HashSet<String>,
}

const TYPE_REF: &str = "fragment T on __Type { kind name ofType { kind name ofType { kind name \
                        ofType { kind name } } } }";

/// The named type of a type reference, and whether a list wraps it.
fn named(t: &Json) -> Option<(String, bool)> {
    let mut t = t;
    let mut list = false;
    while t["kind"] == "NON_NULL" || t["kind"] == "LIST" {
        list |= t["kind"] == "LIST";
        t = &t["ofType"];
    }
    t["name"].as_str().map(|n| (n.to_string(), list))
}

impl TypeInfo {
    pub async fn of(schema: &FakeSchema) -> TypeInfo {
        let query = format!(
            "{{ __schema {{ types {{ name kind fields {{ name type {{ ...T }} args {{ name type \
             {{ ...T }} }} }} inputFields {{ name type {{ ...T }} }} }} }} }} {TYPE_REF}"
        );
        let data = schema
            .execute(query)
            .await
            .data
            .into_json()
            .unwrap_or_default();
        let mut info = TypeInfo::default();
        let types = data["__schema"]["types"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for ty in types {
            let Some(type_name) = ty["name"].as_str() else {
                continue;
            };
            for f in ty["fields"].as_array().into_iter().flatten() {
                let (Some(field_name), Some((named_ty, list))) =
                    (f["name"].as_str(), named(&f["type"]))
                else {
                    continue;
                };
                let args = f["args"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| Some((a["name"].as_str()?.to_string(), named(&a["type"])?.0)))
                    .collect();
                info.fields.insert(
                    (type_name.to_string(), field_name.to_string()),
                    FieldInfo {
                        ty: named_ty,
                        list,
                        args,
                    },
                );
            }
            if ty["kind"] == "INPUT_OBJECT" {
                info.input_types.insert(type_name.to_string());
                for f in ty["inputFields"].as_array().into_iter().flatten() {
                    if let (Some(name), Some((field_ty, _))) =
                        (f["name"].as_str(), named(&f["type"]))
                    {
                        info.input_fields
                            .insert((type_name.to_string(), name.to_string()), field_ty);
                    }
                }
            }
        }
        info
    }

    pub fn field(&self, ty: &str, field: &str) -> Option<&FieldInfo> {
        self.fields.get(&(ty.to_string(), field.to_string()))
    }

    /// Refuses an operation that uses anything introspection does not show.
    pub fn check_known(
        &self,
        doc: &ExecutableDocument,
        op: &OperationDefinition,
        root_type: &str,
        variables: &Map<String, Json>,
    ) -> Result<(), ApiError> {
        let mut walk = Known {
            doc,
            types: self,
            variables,
            active_fragments: HashSet::new(),
        };
        walk.selection_set(&op.selection_set.node, root_type)
    }
}

struct Known<'a> {
    doc: &'a ExecutableDocument,
    types: &'a TypeInfo,
    variables: &'a Map<String, Json>,
    active_fragments: HashSet<&'a Name>,
}

impl<'a> Known<'a> {
    fn selection_set(&mut self, set: &'a SelectionSet, ty: &str) -> Result<(), ApiError> {
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    let name = field.name.node.as_str();
                    // Introspection and __typename are always there.
                    if name.starts_with("__") {
                        continue;
                    }
                    let Some(info) = self.types.field(ty, name) else {
                        return Err(ApiError::uncategorised(Msg::UnknownField {
                            ty: ty.to_string(),
                            field: name.to_string(),
                        }));
                    };
                    for (arg, value) in &field.arguments {
                        let Some(arg_ty) = info.args.get(arg.node.as_str()) else {
                            return Err(ApiError::uncategorised(Msg::UnknownArgument {
                                ty: ty.to_string(),
                                field: name.to_string(),
                                argument: arg.node.to_string(),
                            }));
                        };
                        self.value(&value.node, arg_ty)?;
                    }
                    self.selection_set(&field.selection_set.node, &info.ty.clone())?;
                }
                Selection::InlineFragment(frag) => {
                    let frag = &frag.node;
                    let inner = frag
                        .type_condition
                        .as_ref()
                        .map(|c| c.node.on.node.as_str())
                        .unwrap_or(ty);
                    self.selection_set(&frag.selection_set.node, inner)?;
                }
                Selection::FragmentSpread(spread) => {
                    let name = &spread.node.fragment_name.node;
                    let Some((def_name, def)) = self.doc.fragments.get_key_value(name) else {
                        continue;
                    };
                    if !self.active_fragments.insert(def_name) {
                        continue;
                    }
                    let def: &'a Positioned<FragmentDefinition> = def;
                    let inner = def.node.type_condition.node.on.node.as_str();
                    self.selection_set(&def.node.selection_set.node, inner)?;
                    self.active_fragments.remove(def_name);
                }
            }
        }
        Ok(())
    }

    /// An argument's value, literal or from a variable, against its type.
    fn value(&self, value: &AstValue, ty: &str) -> Result<(), ApiError> {
        match value {
            AstValue::Variable(name) => match self.variables.get(name.as_str()) {
                Some(json) => self.json(json, ty),
                None => Ok(()),
            },
            AstValue::List(items) => items.iter().try_for_each(|v| self.value(v, ty)),
            AstValue::Object(fields) if self.types.input_types.contains(ty) => {
                for (name, v) in fields {
                    let field_ty = self.input_field(ty, name.as_str())?;
                    self.value(v, field_ty)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn json(&self, value: &Json, ty: &str) -> Result<(), ApiError> {
        match value {
            Json::Array(items) => items.iter().try_for_each(|v| self.json(v, ty)),
            Json::Object(fields) if self.types.input_types.contains(ty) => {
                for (name, v) in fields {
                    let field_ty = self.input_field(ty, name)?;
                    self.json(v, field_ty)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn input_field(&self, ty: &str, field: &str) -> Result<&'a String, ApiError> {
        self.types
            .input_fields
            .get(&(ty.to_string(), field.to_string()))
            .ok_or_else(|| {
                ApiError::uncategorised(Msg::UnknownInputField {
                    ty: ty.to_string(),
                    field: field.to_string(),
                })
            })
    }
}
