//! Renders docs/api.md from the descriptor set keysmith-api builds (with
//! source info, so that the protos' comments are the reference's text).
//! Every keysmith package is rendered: its services with their RPCs, its
//! messages with their fields, its enums with their values, and the
//! UPPER_SNAKE reasons and warning codes its comments name.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use prost_types::{
    field_descriptor_proto::{Label, Type},
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorProto,
    FileDescriptorSet, ServiceDescriptorProto,
};

/// The packages the reference describes (google's are imports).
const PACKAGE_PREFIX: &str = "keysmith.";
/// The API; the other packages (the lock simulator) come after it.
const API_PACKAGE: &str = "keysmith.v1";

/// UPPER_SNAKE words of the comments that are neither reasons nor codes:
/// gRPC's status codes, and the name of the convention itself.
const NOT_REASONS: &[&str] = &[
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "OUT_OF_RANGE",
    "DATA_LOSS",
    "UPPER_SNAKE",
];

// Field numbers in descriptor.proto: the paths of SourceCodeInfo locations.
const FILE_MESSAGE: i32 = 4;
const FILE_ENUM: i32 = 5;
const FILE_SERVICE: i32 = 6;
const MESSAGE_FIELD: i32 = 2;
const MESSAGE_NESTED: i32 = 3;
const MESSAGE_ENUM: i32 = 4;
const ENUM_VALUE: i32 = 2;
const SERVICE_METHOD: i32 = 2;

pub fn render(set: &FileDescriptorSet, regenerate: &str) -> String {
    let mut files: Vec<&FileDescriptorProto> = set
        .file
        .iter()
        .filter(|f| f.package().starts_with(PACKAGE_PREFIX))
        .collect();
    files.sort_by(|a, b| (a.package(), a.name()).cmp(&(b.package(), b.name())));
    let known = known_types(&files);
    let mut reasons = Reasons::default();
    let mut packages: BTreeMap<(bool, &str), String> = BTreeMap::new();
    for file in &files {
        let out = packages
            .entry((file.package() != API_PACKAGE, file.package()))
            .or_default();
        File::new(file, &known, &mut reasons).render(out);
    }

    let mut out = String::new();
    writeln!(out, "# keysmith API reference\n").unwrap();
    writeln!(
        out,
        "Generated from `proto/` (the descriptor set `keysmith-api` builds, with the protos' \
         comments) by `{regenerate}`; do not edit by hand. `cargo test` fails when this file \
         differs from what it would generate.\n"
    )
    .unwrap();
    writeln!(
        out,
        "Errors are `google.rpc.Status` (the `grpc-status-details-bin` trailer) carrying a \
         `google.rpc.ErrorInfo` (domain `keysmith.dev`, an UPPER_SNAKE `reason`), a \
         `google.rpc.BadRequest` with a field violation per wrong field for bad input, and a \
         `google.rpc.RetryInfo` where waiting helps (`proto/google/rpc/error_details.proto`). \
         The README has the reasons in context.\n"
    )
    .unwrap();
    writeln!(out, "## Packages\n").unwrap();
    for (_, package) in packages.keys() {
        writeln!(out, "- [`{package}`](#{})", anchor(package)).unwrap();
    }
    writeln!(
        out,
        "- [Reasons and warning codes named in the protos](#reasons-and-warning-codes)\n"
    )
    .unwrap();
    for ((_, package), text) in &packages {
        writeln!(out, "<a id=\"{}\"></a>\n", anchor(package)).unwrap();
        writeln!(out, "## Package `{package}`\n").unwrap();
        out.push_str(text);
    }
    reasons.render(&mut out);
    out
}

/// Every message and enum of the rendered packages, by full name (with the
/// leading dot, as type_name holds it), so that fields link to them.
fn known_types(files: &[&FileDescriptorProto]) -> BTreeSet<String> {
    fn message(prefix: &str, m: &DescriptorProto, into: &mut BTreeSet<String>) {
        let name = format!("{prefix}.{}", m.name());
        for nested in &m.nested_type {
            message(&name, nested, into);
        }
        for e in &m.enum_type {
            into.insert(format!("{name}.{}", e.name()));
        }
        into.insert(name);
    }
    let mut known = BTreeSet::new();
    for file in files {
        let prefix = format!(".{}", file.package());
        for m in &file.message_type {
            message(&prefix, m, &mut known);
        }
        for e in &file.enum_type {
            known.insert(format!("{prefix}.{}", e.name()));
        }
    }
    known
}

/// The anchor of a package or a type: its full name without the leading dot.
fn anchor(full_name: &str) -> String {
    full_name.trim_start_matches('.').to_owned()
}

/// A comment's lines as one paragraph per blank-line-separated block.
fn paragraphs(comment: &str) -> Vec<String> {
    comment
        .split("\n\n")
        .map(|block| {
            block
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|p| !p.is_empty())
        .collect()
}

/// A comment fit for one table cell.
fn cell(comment: &str) -> String {
    paragraphs(comment).join(" ").replace('|', "\\|")
}

/// The UPPER_SNAKE words of the comments that are not enum values: the
/// error reasons and warning codes the protos name, with where.
#[derive(Default)]
struct Reasons {
    /// Each word, with the elements (name, anchor) whose comments name it.
    named: BTreeMap<String, BTreeSet<(String, String)>>,
    enum_values: BTreeSet<String>,
}

impl Reasons {
    fn scan(&mut self, comment: &str, element: &str, anchor: &str) {
        for word in comment.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            let upper_snake = word.contains('_')
                && word.starts_with(|c: char| c.is_ascii_uppercase())
                && word
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if upper_snake {
                self.named
                    .entry(word.to_owned())
                    .or_default()
                    .insert((element.to_owned(), anchor.to_owned()));
            }
        }
    }

    fn render(&self, out: &mut String) {
        writeln!(out, "<a id=\"reasons-and-warning-codes\"></a>\n").unwrap();
        writeln!(out, "## Reasons and warning codes named in the protos\n").unwrap();
        writeln!(
            out,
            "The `ErrorInfo` reasons and `Warning` codes that the comments above name, with \
             where. Reasons are added within `keysmith.v1`, never removed or renamed \
             (CHANGELOG.md).\n"
        )
        .unwrap();
        writeln!(out, "| reason or code | named by |").unwrap();
        writeln!(out, "| --- | --- |").unwrap();
        for (word, elements) in &self.named {
            // An enum value, or the end of one (ENCODING_REQUIRED of
            // KEY_STATE_ENCODING_REQUIRED), is a state, not a reason.
            let names_a_value = self
                .enum_values
                .iter()
                .any(|v| v == word || v.ends_with(&format!("_{word}")));
            if names_a_value || NOT_REASONS.contains(&word.as_str()) {
                continue;
            }
            let links = elements
                .iter()
                .map(|(element, anchor)| format!("[`{element}`](#{anchor})"))
                .collect::<Vec<_>>()
                .join(", ");
            writeln!(out, "| `{word}` | {links} |").unwrap();
        }
    }
}

/// One proto file: its comments by source path, and how to render it.
struct File<'a> {
    file: &'a FileDescriptorProto,
    comments: HashMap<Vec<i32>, String>,
    known: &'a BTreeSet<String>,
    reasons: &'a mut Reasons,
}

impl<'a> File<'a> {
    fn new(
        file: &'a FileDescriptorProto,
        known: &'a BTreeSet<String>,
        reasons: &'a mut Reasons,
    ) -> Self {
        let comments = file
            .source_code_info
            .iter()
            .flat_map(|info| &info.location)
            .filter_map(|l| {
                let text = [l.leading_comments(), l.trailing_comments()]
                    .iter()
                    .map(|c| c.trim())
                    .filter(|c| !c.is_empty())
                    .collect::<Vec<_>>()
                    .join("\n\n");
                (!text.is_empty()).then(|| (l.path.clone(), text))
            })
            .collect();
        File {
            file,
            comments,
            known,
            reasons,
        }
    }

    /// The comment at `path`, scanned for reasons as `element`'s, which is
    /// described under the heading `anchor`.
    fn comment(&mut self, path: &[i32], element: &str, anchor: &str) -> String {
        let text = self.comments.get(path).cloned().unwrap_or_default();
        self.reasons.scan(&text, element, anchor);
        text
    }

    fn render(&mut self, out: &mut String) {
        let package = self.file.package().to_owned();
        let file = self.file;
        for (i, service) in file.service.iter().enumerate() {
            self.service(out, &package, service, &[FILE_SERVICE, i as i32]);
        }
        for (i, message) in file.message_type.iter().enumerate() {
            self.message(out, &package, message, &[FILE_MESSAGE, i as i32]);
        }
        for (i, e) in file.enum_type.iter().enumerate() {
            self.enumeration(out, &package, e, &[FILE_ENUM, i as i32]);
        }
    }

    fn service(
        &mut self,
        out: &mut String,
        package: &str,
        service: &ServiceDescriptorProto,
        path: &[i32],
    ) {
        let full = format!("{package}.{}", service.name());
        writeln!(out, "<a id=\"{full}\"></a>\n").unwrap();
        writeln!(
            out,
            "### Service `{}` (`{}`)\n",
            service.name(),
            self.file.name()
        )
        .unwrap();
        for p in paragraphs(&self.comment(path, &full, &full)) {
            writeln!(out, "{p}\n").unwrap();
        }
        writeln!(out, "| RPC | request | response | description |").unwrap();
        writeln!(out, "| --- | --- | --- | --- |").unwrap();
        for (i, method) in service.method.iter().enumerate() {
            let method_path = [path, &[SERVICE_METHOD, i as i32]].concat();
            let element = format!("{full}.{}", method.name());
            let text = self.comment(&method_path, &element, &full);
            let stream = |streaming: bool| if streaming { "stream " } else { "" };
            writeln!(
                out,
                "| `{}` | {}{} | {}{} | {} |",
                method.name(),
                stream(method.client_streaming()),
                self.type_link(method.input_type()),
                stream(method.server_streaming()),
                self.type_link(method.output_type()),
                cell(&text),
            )
            .unwrap();
        }
        writeln!(out).unwrap();
    }

    fn message(&mut self, out: &mut String, scope: &str, message: &DescriptorProto, path: &[i32]) {
        let full = format!("{scope}.{}", message.name());
        if message.options.as_ref().is_some_and(|o| o.map_entry()) {
            return; // shown as the map<K, V> of its field
        }
        writeln!(out, "<a id=\"{full}\"></a>\n").unwrap();
        writeln!(out, "### Message `{full}`\n").unwrap();
        for p in paragraphs(&self.comment(path, &full, &full)) {
            writeln!(out, "{p}\n").unwrap();
        }
        if message.field.is_empty() {
            writeln!(out, "No fields.\n").unwrap();
        } else {
            writeln!(out, "| field | number | type | label | description |").unwrap();
            writeln!(out, "| --- | --- | --- | --- | --- |").unwrap();
            for (i, field) in message.field.iter().enumerate() {
                let field_path = [path, &[MESSAGE_FIELD, i as i32]].concat();
                let text = self.comment(&field_path, &format!("{full}.{}", field.name()), &full);
                writeln!(
                    out,
                    "| `{}` | {} | {} | {} | {} |",
                    field.name(),
                    field.number(),
                    self.field_type(message, field),
                    label(message, field),
                    cell(&text),
                )
                .unwrap();
            }
            writeln!(out).unwrap();
        }
        for (i, nested) in message.nested_type.iter().enumerate() {
            self.message(
                out,
                &full,
                nested,
                &[path, &[MESSAGE_NESTED, i as i32]].concat(),
            );
        }
        for (i, e) in message.enum_type.iter().enumerate() {
            self.enumeration(out, &full, e, &[path, &[MESSAGE_ENUM, i as i32]].concat());
        }
    }

    fn enumeration(
        &mut self,
        out: &mut String,
        scope: &str,
        e: &EnumDescriptorProto,
        path: &[i32],
    ) {
        let full = format!("{scope}.{}", e.name());
        writeln!(out, "<a id=\"{full}\"></a>\n").unwrap();
        writeln!(out, "### Enum `{full}`\n").unwrap();
        for p in paragraphs(&self.comment(path, &full, &full)) {
            writeln!(out, "{p}\n").unwrap();
        }
        writeln!(out, "| value | number | description |").unwrap();
        writeln!(out, "| --- | --- | --- |").unwrap();
        for (i, value) in e.value.iter().enumerate() {
            self.reasons.enum_values.insert(value.name().to_owned());
            let text = self.comment(
                &[path, &[ENUM_VALUE, i as i32]].concat(),
                &format!("{full}.{}", value.name()),
                &full,
            );
            writeln!(
                out,
                "| `{}` | {} | {} |",
                value.name(),
                value.number(),
                cell(&text)
            )
            .unwrap();
        }
        writeln!(out).unwrap();
    }

    /// A message or enum type, linked when the reference describes it.
    fn type_link(&self, type_name: &str) -> String {
        let name = anchor(type_name);
        if self.known.contains(type_name) {
            format!("[`{name}`](#{name})")
        } else {
            format!("`{name}`")
        }
    }

    fn field_type(&self, message: &DescriptorProto, field: &FieldDescriptorProto) -> String {
        if let Some(entry) = map_entry(message, field) {
            let [key, value] = [&entry.field[0], &entry.field[1]];
            return format!(
                "map<{}, {}>",
                self.field_type(entry, key),
                self.field_type(entry, value)
            );
        }
        match field.r#type() {
            Type::Message | Type::Enum | Type::Group => self.type_link(field.type_name()),
            scalar => format!("`{}`", scalar_name(scalar)),
        }
    }
}

/// The map entry a `map<K, V>` field is made of, if it is one.
fn map_entry<'m>(
    message: &'m DescriptorProto,
    field: &FieldDescriptorProto,
) -> Option<&'m DescriptorProto> {
    if field.label() != Label::Repeated || field.r#type() != Type::Message {
        return None;
    }
    let entry_name = field.type_name().rsplit('.').next()?;
    message
        .nested_type
        .iter()
        .find(|n| n.name() == entry_name && n.options.as_ref().is_some_and(|o| o.map_entry()))
}

/// `repeated`, `optional` (proto3's explicit presence), the oneof a field
/// belongs to, or nothing.
fn label(message: &DescriptorProto, field: &FieldDescriptorProto) -> String {
    if map_entry(message, field).is_some() {
        return String::new();
    }
    if field.proto3_optional() {
        return "optional".to_owned();
    }
    if field.label() == Label::Repeated {
        return "repeated".to_owned();
    }
    match field.oneof_index {
        Some(i) => format!("oneof `{}`", message.oneof_decl[i as usize].name()),
        None => String::new(),
    }
}

fn scalar_name(t: Type) -> &'static str {
    match t {
        Type::Double => "double",
        Type::Float => "float",
        Type::Int64 => "int64",
        Type::Uint64 => "uint64",
        Type::Int32 => "int32",
        Type::Fixed64 => "fixed64",
        Type::Fixed32 => "fixed32",
        Type::Bool => "bool",
        Type::String => "string",
        Type::Bytes => "bytes",
        Type::Uint32 => "uint32",
        Type::Sfixed32 => "sfixed32",
        Type::Sfixed64 => "sfixed64",
        Type::Sint32 => "sint32",
        Type::Sint64 => "sint64",
        Type::Group | Type::Message | Type::Enum => "message",
    }
}
