//! Errors as 3RPMS reports them: a message in the caller's language and an
//! `extensions.category` that is the actual contract (messages are not).

use async_graphql::{ErrorExtensionValues, ServerError, Value};

/// The language of error messages, from `Accept-Language`. 3RPMS answers in
/// German unless asked for English.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Lang {
    En,
    #[default]
    De,
}

impl Lang {
    /// `en`, `en-GB`, `en-US;q=0.9, de` ... give English: the first (preferred)
    /// language decides; anything else is German, as the vendor documents.
    pub fn from_accept_language(header: Option<&str>) -> Lang {
        let first = header.and_then(|h| h.split(',').next()).map(|tag| {
            tag.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
        match first {
            Some(tag) if tag == "en" || tag.starts_with("en-") => Lang::En,
            _ => Lang::De,
        }
    }
}

/// The three categories the vendor documents. Syntax and schema errors carry
/// none, so this is always used as `Option<Category>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Category {
    Configuration,
    Validation,
    Auth,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Configuration => "configuration",
            Category::Validation => "validation",
            Category::Auth => "auth",
        }
    }
}

/// One step of `extensions.argumentPath`: argument and field names are
/// strings, list positions are numbers (as in the GraphQL `path`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathSeg {
    Name(String),
    Index(usize),
}

impl From<&str> for PathSeg {
    fn from(s: &str) -> Self {
        PathSeg::Name(s.to_string())
    }
}

impl From<usize> for PathSeg {
    fn from(i: usize) -> Self {
        PathSeg::Index(i)
    }
}

/// Builds an argument path: `arg_path!["input", "roomAccessPin", "pin"]`.
macro_rules! arg_path {
    ($($seg:expr),* $(,)?) => {
        vec![$($crate::errors::PathSeg::from($seg)),*]
    };
}
pub(crate) use arg_path;

/// Everything the fake can say, in both languages. Keeping the texts in one
/// place keeps resolvers free of wording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Msg {
    // auth
    MissingApiKey,
    UnknownApiKey,
    DisabledApiKey,
    ReadOnlyApiKey,
    // configuration
    RoomAccessKeysNotConfigured,
    // validation: paging and dates
    FirstOutOfRange {
        max: i32,
    },
    InvalidCursor,
    ExpiredCursor,
    InvalidDate(String),
    // validation: key contents
    OneKeyTypeRequired,
    PinEmpty,
    PinTooLong,
    PinNotAlphanumeric,
    PinMixedCase,
    CompartmentEmpty,
    CompartmentTooLong,
    CompartmentNotAlphanumeric,
    QrDataEmpty,
    QrDataTooLong,
    // validation: references and rules
    UnknownRoomStay(String),
    UnknownRoomAccessKey(String),
    NotOwnRoomAccessKey(String),
    RoomStayAlreadyHasKey(String),
    KeyNotOnRoomStay {
        stay: String,
        key: String,
    },
    KeyStillAssigned(String),
    // validation: webhooks
    InvalidWebhookUrl,
    TooManyActiveEndpoints {
        max: usize,
    },
    NoWebhookEvents,
    UnknownWebhookEvent(String),
    UnknownWebhookEndpoint(String),
    // request shape (no category)
    BadBatchEntry(String),
    BatchTooLarge {
        max: usize,
    },
    UnknownField {
        ty: String,
        field: String,
    },
    UnknownArgument {
        ty: String,
        field: String,
        argument: String,
    },
    UnknownInputField {
        ty: String,
        field: String,
    },
    /// A refusal a test asked for (`Fake3rpms::refuse_operations`).
    Refused,
    ChainUnderList(String),
    ChainDeclaredTwice(String),
    ChainNameNotLiteral,
    ChainVariableSent(String),
    ChainVariableNotDeclared(String),
    ChainValueMissing(String),
}

impl Msg {
    pub fn text(&self, lang: Lang) -> String {
        use Msg::*;
        let (en, de): (String, String) = match self {
            MissingApiKey => (
                "Missing API key: send `Authorization: Bearer <key>`".into(),
                "API-Schlüssel fehlt: `Authorization: Bearer <Schlüssel>` senden".into(),
            ),
            UnknownApiKey => ("Unknown API key".into(), "Unbekannter API-Schlüssel".into()),
            DisabledApiKey => ("API key is disabled".into(), "API-Schlüssel ist deaktiviert".into()),
            ReadOnlyApiKey => (
                "This API key is read-only and cannot run mutations".into(),
                "Dieser API-Schlüssel darf nur lesen und keine Mutationen ausführen".into(),
            ),
            RoomAccessKeysNotConfigured => (
                "Room access keys are not configured for this hotel".into(),
                "Zimmerzugangsschlüssel sind für dieses Hotel nicht eingerichtet".into(),
            ),
            FirstOutOfRange { max } => (
                format!("`first` must be between 0 and {max}"),
                format!("`first` muss zwischen 0 und {max} liegen"),
            ),
            InvalidCursor => (
                "Invalid cursor for this query".into(),
                "Ungültiger Cursor für diese Abfrage".into(),
            ),
            ExpiredCursor => ("Cursor has expired".into(), "Cursor ist abgelaufen".into()),
            InvalidDate(v) => (
                format!("Invalid date {v:?}: expected YYYY-MM-DD"),
                format!("Ungültiges Datum {v:?}: erwartet JJJJ-MM-TT"),
            ),
            OneKeyTypeRequired => (
                "Exactly one of roomAccessPin, roomAccessKeyStorage, roomAccessQR is required"
                    .into(),
                "Genau eines von roomAccessPin, roomAccessKeyStorage, roomAccessQR ist erforderlich"
                    .into(),
            ),
            PinEmpty => ("PIN must not be empty".into(), "PIN darf nicht leer sein".into()),
            PinTooLong => (
                "PIN must be at most 10 characters".into(),
                "PIN darf höchstens 10 Zeichen lang sein".into(),
            ),
            PinNotAlphanumeric => (
                "PIN may contain only letters and digits".into(),
                "PIN darf nur Buchstaben und Ziffern enthalten".into(),
            ),
            PinMixedCase => (
                "PIN may use upper or lower case letters, not both".into(),
                "PIN darf Groß- oder Kleinbuchstaben enthalten, nicht beides".into(),
            ),
            CompartmentEmpty => (
                "Compartment must not be empty".into(),
                "Fach darf nicht leer sein".into(),
            ),
            CompartmentTooLong => (
                "Compartment must be at most 10 characters".into(),
                "Fach darf höchstens 10 Zeichen lang sein".into(),
            ),
            CompartmentNotAlphanumeric => (
                "Compartment may contain only letters and digits".into(),
                "Fach darf nur Buchstaben und Ziffern enthalten".into(),
            ),
            QrDataEmpty => (
                "qrData must not be empty".into(),
                "qrData darf nicht leer sein".into(),
            ),
            QrDataTooLong => (
                "qrData must be at most 512 characters".into(),
                "qrData darf höchstens 512 Zeichen lang sein".into(),
            ),
            UnknownRoomStay(id) => (
                format!("Room stay {id:?} not found"),
                format!("Zimmeraufenthalt {id:?} nicht gefunden"),
            ),
            UnknownRoomAccessKey(id) => (
                format!("Room access key {id:?} not found"),
                format!("Zimmerzugangsschlüssel {id:?} nicht gefunden"),
            ),
            NotOwnRoomAccessKey(id) => (
                format!("Room access key {id:?} was created by another integration"),
                format!("Zimmerzugangsschlüssel {id:?} wurde von einer anderen Integration angelegt"),
            ),
            RoomStayAlreadyHasKey(id) => (
                format!("Room stay {id:?} already has a room access key; remove it first"),
                format!(
                    "Zimmeraufenthalt {id:?} hat bereits einen Zimmerzugangsschlüssel; zuerst entfernen"
                ),
            ),
            KeyNotOnRoomStay { stay, key } => (
                format!("Room access key {key:?} is not assigned to room stay {stay:?}"),
                format!("Zimmerzugangsschlüssel {key:?} ist Zimmeraufenthalt {stay:?} nicht zugewiesen"),
            ),
            KeyStillAssigned(id) => (
                format!("Room access key {id:?} is still assigned to a room stay"),
                format!("Zimmerzugangsschlüssel {id:?} ist noch einem Zimmeraufenthalt zugewiesen"),
            ),
            InvalidWebhookUrl => (
                "url must be an absolute https URL".into(),
                "url muss eine absolute https-URL sein".into(),
            ),
            TooManyActiveEndpoints { max } => (
                format!("A hotel may have at most {max} active webhook endpoints per integration"),
                format!("Ein Hotel darf höchstens {max} aktive Webhook-Endpunkte je Integration haben"),
            ),
            NoWebhookEvents => (
                "events must name at least one event".into(),
                "events muss mindestens ein Ereignis nennen".into(),
            ),
            UnknownWebhookEvent(e) => (
                format!("Unknown webhook event {e:?}"),
                format!("Unbekanntes Webhook-Ereignis {e:?}"),
            ),
            UnknownWebhookEndpoint(id) => (
                format!("Webhook endpoint {id:?} not found"),
                format!("Webhook-Endpunkt {id:?} nicht gefunden"),
            ),
            BadBatchEntry(why) => (
                format!("Invalid request entry: {why}"),
                format!("Ungültiger Anfrageeintrag: {why}"),
            ),
            BatchTooLarge { max } => (
                format!("A batch may hold at most {max} operations"),
                format!("Ein Stapel darf höchstens {max} Operationen enthalten"),
            ),
            // Worded as GraphQL validation words them, in both languages.
            UnknownField { ty, field } => (
                format!("Unknown field \"{field}\" on type \"{ty}\"."),
                format!("Unknown field \"{field}\" on type \"{ty}\"."),
            ),
            UnknownArgument { ty, field, argument } => (
                format!("Unknown argument \"{argument}\" on field \"{ty}.{field}\"."),
                format!("Unknown argument \"{argument}\" on field \"{ty}.{field}\"."),
            ),
            UnknownInputField { ty, field } => (
                format!("Unknown field \"{field}\" on input type \"{ty}\"."),
                format!("Unknown field \"{field}\" on input type \"{ty}\"."),
            ),
            Refused => (
                "This request cannot be processed".into(),
                "Diese Anfrage kann nicht verarbeitet werden".into(),
            ),
            ChainUnderList(name) => (
                format!("@chain(variable: {name:?}) is not allowed on a field under a list"),
                format!("@chain(variable: {name:?}) ist unter einer Liste nicht erlaubt"),
            ),
            ChainDeclaredTwice(name) => (
                format!("Chained variable {name:?} is declared twice"),
                format!("Verkettete Variable {name:?} ist doppelt deklariert"),
            ),
            ChainNameNotLiteral => (
                "@chain(variable: ...) takes a string literal".into(),
                "@chain(variable: ...) erwartet eine Zeichenkette".into(),
            ),
            ChainVariableSent(name) => (
                format!("Variable ${name} comes from @chain in the previous entry and must not be sent"),
                format!("Variable ${name} stammt aus @chain des vorherigen Eintrags und darf nicht gesendet werden"),
            ),
            ChainVariableNotDeclared(name) => (
                format!("Variable ${name} is chained from the previous entry but not declared"),
                format!("Variable ${name} wird aus dem vorherigen Eintrag verkettet, ist aber nicht deklariert"),
            ),
            ChainValueMissing(name) => (
                format!("Chained variable ${name} has no value: the previous entry did not produce it"),
                format!("Verkettete Variable ${name} hat keinen Wert: der vorherige Eintrag hat ihn nicht geliefert"),
            ),
        };
        match lang {
            Lang::En => en,
            Lang::De => de,
        }
    }
}

/// An error of the fake's domain, before it is put into GraphQL form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub category: Option<Category>,
    pub msg: Msg,
    pub argument_path: Option<Vec<PathSeg>>,
}

impl ApiError {
    pub fn auth(msg: Msg) -> Self {
        ApiError {
            category: Some(Category::Auth),
            msg,
            argument_path: None,
        }
    }

    pub fn configuration(msg: Msg) -> Self {
        ApiError {
            category: Some(Category::Configuration),
            msg,
            argument_path: None,
        }
    }

    pub fn validation(msg: Msg, path: Vec<PathSeg>) -> Self {
        ApiError {
            category: Some(Category::Validation),
            msg,
            argument_path: Some(path),
        }
    }

    /// Request-shape errors (like schema errors) carry no category.
    pub fn uncategorised(msg: Msg) -> Self {
        ApiError {
            category: None,
            msg,
            argument_path: None,
        }
    }

    fn extensions(&self) -> Option<ErrorExtensionValues> {
        let category = self.category?;
        let mut ext = ErrorExtensionValues::default();
        ext.set("category", category.as_str());
        if let Some(path) = &self.argument_path {
            let list = path
                .iter()
                .map(|seg| match seg {
                    PathSeg::Name(n) => Value::String(n.clone()),
                    PathSeg::Index(i) => Value::from(*i as u64),
                })
                .collect::<Vec<_>>();
            ext.set("argumentPath", Value::List(list));
        }
        Some(ext)
    }

    /// For resolvers: async-graphql adds location and path.
    pub fn into_gql(self, lang: Lang) -> async_graphql::Error {
        let mut err = async_graphql::Error::new(self.msg.text(lang));
        err.extensions = self.extensions();
        err
    }

    /// For errors raised outside execution (auth, chain checks).
    pub fn into_server_error(self, lang: Lang) -> ServerError {
        let mut err = ServerError::new(self.msg.text(lang), None);
        err.extensions = self.extensions();
        err
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
