//! One HTTP body → GraphQL entries → answers, with the vendor's batch
//! semantics: entries run in order, `@chain` passes a value to the next
//! entry only, and mutations of one request are all-or-nothing.

use std::collections::HashSet;
use std::sync::Arc;

use async_graphql::parser::parse_query;
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationDefinition, OperationType, Selection,
};
use async_graphql::{Response, ServerError, Variables};
use serde_json::{Map, Value as Json};

use crate::chain::{apply_carry, chained_names, Carry, ChainSink};
use crate::config::Access;
use crate::counts::Counters;
use crate::errors::{ApiError, Lang, Msg};
use crate::schema::{Core, FakeSchema, RequestCtx};
use crate::state::{Principal, UndoLog};
use crate::types::TypeInfo;

/// How a test-arranged refusal answers (see `Fake3rpms::refuse_operations`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// An error without a category, as 3RPMS answers a query its schema
    /// does not accept.
    Schema,
    /// A `validation` error.
    Validation,
}

/// Which operations a test has 3RPMS refuse: given the query text and the
/// variables sent.
pub(crate) type RefusalMatcher = Box<dyn Fn(&str, &Json) -> bool + Send + Sync>;

/// Nesting of `{ ( [` beyond which a query is refused before parsing, so
/// that no input can exhaust the parser's stack.
const MAX_NESTING: usize = 64;

/// Everything the executor needs from the server.
pub(crate) struct Engine {
    pub core: Arc<Core>,
    pub schema: FakeSchema,
    pub types: TypeInfo,
    pub counts: Arc<Counters>,
    /// Requests with mutations run one at a time, so a rollback never
    /// interleaves with another request's mutations.
    pub write_gate: tokio::sync::Mutex<()>,
    /// Operations one request may carry.
    pub max_batch: usize,
    /// Operations a test has the fake refuse.
    pub refusal: parking_lot::Mutex<Option<(Refusal, RefusalMatcher)>>,
}

/// The answer to an HTTP body: a status and a JSON document.
pub(crate) struct Answer {
    pub status: u16,
    /// Serialised straight from the responses so fields keep the order of
    /// the selection, as a real GraphQL server answers.
    pub body: String,
}

struct Entry {
    query: String,
    variables: Map<String, Json>,
    operation_name: Option<String>,
}

/// What is known about an entry before it runs.
#[derive(Default)]
struct Analysis {
    op_type: Option<OperationType>,
    root_fields: Vec<String>,
    declared: HashSet<String>,
    /// Names the entry chains, or why its @chain use is invalid.
    chained: Option<Result<Vec<String>, ApiError>>,
    /// A field, argument or input field the schema does not show.
    unknown: Option<ApiError>,
}

fn shape_error(lang: Lang, why: &str) -> Answer {
    let err = ApiError::uncategorised(Msg::BadBatchEntry(why.to_string())).into_server_error(lang);
    Answer {
        status: 400,
        body: serde_json::json!({ "errors": [err] }).to_string(),
    }
}

fn parse_entry(v: &Json) -> Result<Entry, &'static str> {
    let obj = v.as_object().ok_or("each entry must be an object")?;
    let query = obj
        .get("query")
        .and_then(Json::as_str)
        .ok_or("\"query\" must be a string")?;
    let variables = match obj.get("variables") {
        None | Some(Json::Null) => Map::new(),
        Some(Json::Object(m)) => m.clone(),
        Some(_) => return Err("\"variables\" must be an object"),
    };
    let operation_name = match obj.get("operationName") {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) => Some(s.clone()),
        Some(_) => return Err("\"operationName\" must be a string"),
    };
    Ok(Entry {
        query: query.to_string(),
        variables,
        operation_name,
    })
}

/// Deepest nesting of brackets outside string literals.
fn nesting(query: &str) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for c in query.chars() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' | '(' | '[' => {
                depth += 1;
                max = max.max(depth);
            }
            '}' | ')' | ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

fn select_operation<'d>(
    doc: &'d ExecutableDocument,
    name: Option<&str>,
) -> Option<&'d OperationDefinition> {
    match &doc.operations {
        DocumentOperations::Single(op) => Some(&op.node),
        DocumentOperations::Multiple(ops) => match name {
            Some(n) => ops
                .iter()
                .find(|(k, _)| k.as_str() == n)
                .map(|(_, op)| &op.node),
            None if ops.len() == 1 => ops.values().next().map(|op| &op.node),
            None => None,
        },
    }
}

fn root_fields(doc: &ExecutableDocument, op: &OperationDefinition) -> Vec<String> {
    fn walk(
        doc: &ExecutableDocument,
        set: &async_graphql::parser::types::SelectionSet,
        out: &mut Vec<String>,
        depth: usize,
    ) {
        if depth > 8 {
            return;
        }
        for item in &set.items {
            match &item.node {
                Selection::Field(f) => out.push(f.node.name.node.to_string()),
                Selection::InlineFragment(f) => {
                    walk(doc, &f.node.selection_set.node, out, depth + 1)
                }
                Selection::FragmentSpread(s) => {
                    if let Some(def) = doc.fragments.get(&s.node.fragment_name.node) {
                        walk(doc, &def.node.selection_set.node, out, depth + 1);
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(doc, &op.selection_set.node, &mut out, 0);
    out
}

impl Engine {
    fn analyse(&self, entry: &Entry) -> Analysis {
        if nesting(&entry.query) > MAX_NESTING {
            return Analysis::default();
        }
        let Ok(doc) = parse_query(&entry.query) else {
            return Analysis::default();
        };
        let Some(op) = select_operation(&doc, entry.operation_name.as_deref()) else {
            return Analysis::default();
        };
        let root = match op.ty {
            OperationType::Query => "Query",
            OperationType::Mutation => "Mutation",
            OperationType::Subscription => "Subscription",
        };
        Analysis {
            op_type: Some(op.ty),
            root_fields: root_fields(&doc, op),
            declared: op
                .variable_definitions
                .iter()
                .map(|v| v.node.name.node.to_string())
                .collect(),
            chained: Some(chained_names(&doc, op, root, &self.types)),
            unknown: self
                .types
                .check_known(&doc, op, root, &entry.variables)
                .err(),
        }
    }

    /// The error of a test-arranged refusal, when it matches the entry.
    fn refused(&self, entry: &Entry) -> Option<ApiError> {
        let refusal = self.refusal.lock();
        let (kind, matches) = refusal.as_ref()?;
        if !matches(&entry.query, &Json::Object(entry.variables.clone())) {
            return None;
        }
        Some(match kind {
            Refusal::Schema => ApiError::uncategorised(Msg::Refused),
            Refusal::Validation => ApiError::validation(Msg::Refused, Vec::new()),
        })
    }

    /// Runs one HTTP body.
    pub async fn run(&self, token: Option<&str>, lang: Lang, body: &[u8]) -> Answer {
        let Ok(json) = serde_json::from_slice::<Json>(body) else {
            return shape_error(lang, "the body is not JSON");
        };
        let (raw_entries, single) = match json {
            Json::Array(items) if items.is_empty() => {
                return shape_error(lang, "the batch is empty")
            }
            Json::Array(items) if items.len() > self.max_batch => {
                let err = ApiError::uncategorised(Msg::BatchTooLarge {
                    max: self.max_batch,
                })
                .into_server_error(lang);
                return Answer {
                    status: 400,
                    body: serde_json::json!({ "errors": [err] }).to_string(),
                };
            }
            Json::Array(items) => (items, false),
            obj @ Json::Object(_) => (vec![obj], true),
            _ => return shape_error(lang, "the body must be an object or an array"),
        };
        let entries: Vec<Result<Entry, &str>> = raw_entries.iter().map(parse_entry).collect();
        let analyses: Vec<Analysis> = entries
            .iter()
            .map(|e| e.as_ref().map(|e| self.analyse(e)).unwrap_or_default())
            .collect();

        self.counts.update(|c| {
            c.graphql_operations += entries.len() as u64;
            for a in &analyses {
                if a.op_type == Some(OperationType::Mutation) {
                    c.mutations += 1;
                }
                for f in &a.root_fields {
                    *c.root_fields.entry(f.clone()).or_default() += 1;
                }
            }
        });

        let auth = self.core.world.lock().authenticate(token);
        let principal = match auth {
            Ok(p) => p,
            Err(e) => {
                let responses = entries
                    .iter()
                    .map(|_| Response::from_errors(vec![e.clone().into_server_error(lang)]));
                return finish(responses.collect(), single);
            }
        };

        let mutating = analyses
            .iter()
            .any(|a| a.op_type == Some(OperationType::Mutation));
        let _gate = if mutating {
            Some(self.write_gate.lock().await)
        } else {
            None
        };
        let undo = Arc::new(UndoLog::default());
        let mut responses = Vec::with_capacity(entries.len());
        let mut carry: Option<Carry> = None;
        for (entry, analysis) in entries.into_iter().zip(analyses) {
            let incoming = carry.take();
            let (response, outgoing) = self
                .run_entry(entry, analysis, incoming, &principal, lang, &undo)
                .await;
            carry = outgoing;
            responses.push(response);
        }

        if mutating && responses.iter().any(|r| !r.errors.is_empty()) {
            // All-or-nothing: the answers stay as they were (the vendor tells
            // clients to discard them), the changes go.
            self.core.world.lock().roll_back(undo.take());
            self.counts.update(|c| c.rollbacks += 1);
        }
        finish(responses, single)
    }

    async fn run_entry(
        &self,
        entry: Result<Entry, &str>,
        analysis: Analysis,
        incoming: Option<Carry>,
        principal: &Principal,
        lang: Lang,
        undo: &Arc<UndoLog>,
    ) -> (Response, Option<Carry>) {
        let fail = |e: ServerError| (Response::from_errors(vec![e]), None);
        let mut entry = match entry {
            Ok(e) => e,
            Err(why) => {
                return fail(
                    ApiError::uncategorised(Msg::BadBatchEntry(why.into())).into_server_error(lang),
                )
            }
        };
        if nesting(&entry.query) > MAX_NESTING {
            return fail(ServerError::new("query is nested too deeply", None));
        }
        let chained = match analysis.chained {
            Some(Ok(names)) => names,
            Some(Err(e)) => return fail(e.into_server_error(lang)),
            // Unparsable: async-graphql reports the syntax error below.
            None => Vec::new(),
        };
        if let Some(unknown) = analysis.unknown {
            return fail(unknown.into_server_error(lang));
        }
        if let Some(refusal) = self.refused(&entry) {
            self.counts.update(|c| c.refused += 1);
            return fail(refusal.into_server_error(lang));
        }
        if analysis.op_type == Some(OperationType::Mutation) && principal.access != Access::Write {
            return fail(ApiError::auth(Msg::ReadOnlyApiKey).into_server_error(lang));
        }
        if let Some(carry) = &incoming {
            if let Err(e) = apply_carry(carry, &analysis.declared, &mut entry.variables, lang) {
                return fail(e);
            }
        }

        let sink = Arc::new(ChainSink::default());
        let mut request = async_graphql::Request::new(entry.query)
            .variables(Variables::from_json(Json::Object(entry.variables)))
            .data(RequestCtx {
                principal: principal.clone(),
                lang,
                undo: undo.clone(),
            })
            .data(sink.clone());
        if let Some(name) = entry.operation_name {
            request = request.operation_name(name);
        }
        let response = self.schema.execute(request).await;
        let values = sink.take().into_iter().collect();
        let outgoing = (!chained.is_empty()).then_some(Carry {
            names: chained,
            values,
        });
        (response, outgoing)
    }
}

fn finish(responses: Vec<Response>, single: bool) -> Answer {
    let body = if single {
        responses
            .first()
            .map(serde_json::to_string)
            .unwrap_or_else(|| Ok("null".into()))
    } else {
        serde_json::to_string(&responses)
    };
    // Serialising values built by async-graphql does not fail; should it,
    // the client still gets a GraphQL-shaped error rather than a panic.
    let body = body.unwrap_or_else(|_| r#"{"errors":[{"message":"internal error"}]}"#.to_string());
    Answer { status: 200, body }
}

#[cfg(test)]
mod tests {
    use super::nesting;

    #[test]
    fn nesting_ignores_strings() {
        assert_eq!(nesting("{ a { b } }"), 2);
        assert_eq!(nesting(r#"{ a(x: "{{{{\"{{") }"#), 2);
        assert_eq!(nesting(&"{".repeat(10_000)), 10_000);
    }
}
