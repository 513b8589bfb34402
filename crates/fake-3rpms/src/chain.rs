//! `@chain(variable: "name")`: the value of the marked field becomes the
//! variable `$name` of the next entry of a batch.
//!
//! Two halves: a static check of each entry before it runs (the field must
//! not be under a list, a name may be chained once per entry), which needs
//! to know which fields are lists, and a directive that captures the value
//! while the field resolves.

use std::collections::{HashMap, HashSet};

use async_graphql::parser::types::{
    ExecutableDocument, FragmentDefinition, OperationDefinition, Selection, SelectionSet,
};
use async_graphql::{
    Context, CustomDirective, Directive, Name, Positioned, QueryPathSegment, ResolveFut,
    ServerError, ServerResult, Value,
};

// The parser's non-constant value (it may hold `$variables`); async-graphql
// does not re-export it.
use async_graphql_value::Value as AstValue;

use crate::errors::{ApiError, Lang, Msg};
use crate::schema::RequestCtx;
use crate::types::TypeInfo;

/// Values captured by `@chain` while one entry runs.
#[derive(Default)]
pub(crate) struct ChainSink(parking_lot::Mutex<Vec<(String, Value)>>);

impl ChainSink {
    pub fn take(&self) -> Vec<(String, Value)> {
        std::mem::take(&mut *self.0.lock())
    }
}

struct Chain {
    variable: String,
}

#[async_graphql::async_trait::async_trait]
impl CustomDirective for Chain {
    async fn resolve_field(
        &self,
        ctx: &Context<'_>,
        resolve: ResolveFut<'_>,
    ) -> ServerResult<Option<Value>> {
        // The static check rejects this before execution; this is the
        // backstop should a list slip through (e.g. via an unknown type).
        let mut node = ctx.path_node.as_ref();
        while let Some(n) = node {
            if matches!(n.segment, QueryPathSegment::Index(_)) {
                let lang = ctx
                    .data_opt::<RequestCtx>()
                    .map(|r| r.lang)
                    .unwrap_or_default();
                return Err(ServerError::new(
                    Msg::ChainUnderList(self.variable.clone()).text(lang),
                    Some(ctx.item.pos),
                ));
            }
            node = n.parent;
        }
        let value = resolve.await?;
        if let Some(sink) = ctx.data_opt::<std::sync::Arc<ChainSink>>() {
            sink.0
                .lock()
                .push((self.variable.clone(), value.clone().unwrap_or(Value::Null)));
        }
        Ok(value)
    }
}

/// In a batch, the value of this field becomes the variable `$variable` of the
/// next entry (which declares it and does not send it). Not under a list.
#[Directive(location = "Field")]
pub(crate) fn chain(variable: String) -> impl CustomDirective {
    Chain { variable }
}

/// The names an entry chains, checked: none under a list, none twice.
pub(crate) fn chained_names(
    doc: &ExecutableDocument,
    op: &OperationDefinition,
    root_type: &str,
    types: &TypeInfo,
) -> Result<Vec<String>, ApiError> {
    let mut walk = Walk {
        doc,
        types,
        names: Vec::new(),
        active_fragments: HashSet::new(),
    };
    walk.selection_set(&op.selection_set.node, root_type, false)?;
    let mut seen = HashSet::new();
    for name in &walk.names {
        if !seen.insert(name) {
            return Err(ApiError::uncategorised(Msg::ChainDeclaredTwice(
                name.clone(),
            )));
        }
    }
    Ok(walk.names)
}

struct Walk<'a> {
    doc: &'a ExecutableDocument,
    types: &'a TypeInfo,
    names: Vec<String>,
    /// Fragments being expanded, against cycles (which validation would
    /// reject later anyway).
    active_fragments: HashSet<&'a Name>,
}

impl<'a> Walk<'a> {
    fn selection_set(
        &mut self,
        set: &'a SelectionSet,
        ty: &str,
        under_list: bool,
    ) -> Result<(), ApiError> {
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    for d in field
                        .directives
                        .iter()
                        .filter(|d| d.node.name.node.as_str() == "chain")
                    {
                        let name = chain_argument(&d.node.arguments)?;
                        if let Some(name) = name {
                            if under_list {
                                return Err(ApiError::uncategorised(Msg::ChainUnderList(name)));
                            }
                            self.names.push(name);
                        }
                    }
                    // Unknown fields are left to schema validation.
                    if let Some(child) = self.types.field(ty, field.name.node.as_str()) {
                        self.selection_set(
                            &field.selection_set.node,
                            &child.ty,
                            under_list || child.list,
                        )?;
                    }
                }
                Selection::InlineFragment(frag) => {
                    let frag = &frag.node;
                    let inner = frag
                        .type_condition
                        .as_ref()
                        .map(|c| c.node.on.node.as_str())
                        .unwrap_or(ty);
                    self.selection_set(&frag.selection_set.node, inner, under_list)?;
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
                    self.selection_set(&def.node.selection_set.node, inner, under_list)?;
                    self.active_fragments.remove(def_name);
                }
            }
        }
        Ok(())
    }
}

/// The `variable:` argument, which must be a string literal (the next entry
/// declares a variable of that name, so it must be known before running).
fn chain_argument(
    args: &[(Positioned<Name>, Positioned<AstValue>)],
) -> Result<Option<String>, ApiError> {
    match args.iter().find(|(n, _)| n.node.as_str() == "variable") {
        // A missing argument is a schema error async-graphql reports.
        None => Ok(None),
        Some((_, v)) => match &v.node {
            AstValue::String(s) => Ok(Some(s.clone())),
            _ => Err(ApiError::uncategorised(Msg::ChainNameNotLiteral)),
        },
    }
}

/// What one entry hands to the next.
pub(crate) struct Carry {
    /// Names chained by the entry, in document order.
    pub names: Vec<String>,
    /// Their values; a name without a value was not produced (the entry
    /// failed or the field was never reached).
    pub values: HashMap<String, Value>,
}

/// Merges the chained values into the next entry's variables, enforcing
/// the vendor's rules.
pub(crate) fn apply_carry(
    carry: &Carry,
    declared: &HashSet<String>,
    sent: &mut serde_json::Map<String, serde_json::Value>,
    lang: Lang,
) -> Result<(), ServerError> {
    for name in &carry.names {
        if sent.contains_key(name) {
            return Err(
                ApiError::uncategorised(Msg::ChainVariableSent(name.clone()))
                    .into_server_error(lang),
            );
        }
        if !declared.contains(name) {
            return Err(
                ApiError::uncategorised(Msg::ChainVariableNotDeclared(name.clone()))
                    .into_server_error(lang),
            );
        }
        let Some(value) = carry.values.get(name) else {
            return Err(
                ApiError::uncategorised(Msg::ChainValueMissing(name.clone()))
                    .into_server_error(lang),
            );
        };
        sent.insert(
            name.clone(),
            value.clone().into_json().unwrap_or(serde_json::Value::Null),
        );
    }
    Ok(())
}
