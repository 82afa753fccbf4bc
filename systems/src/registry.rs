//! The client kinds a system file may name: the built-in ones, and any a
//! caller adds (`with`). Kept apart from `client`, whose traits every
//! client module implements, so that no module imports its importer.

use crate::client::ClientKind;

/// The client kinds a system file may name.
#[derive(Clone)]
pub struct Registry(Vec<&'static dyn ClientKind>);

impl Registry {
    /// The clients faultline carries.
    pub fn builtin() -> Registry {
        Registry(vec![
            &crate::etcd::KIND,
            &crate::nats::KIND,
            &crate::sql::POSTGRES,
            &crate::sql::MYSQL,
        ])
    }

    /// This registry and `kind` (replacing one of the same name).
    pub fn with(mut self, kind: &'static dyn ClientKind) -> Registry {
        self.0.retain(|k| k.name() != kind.name());
        self.0.push(kind);
        self
    }

    pub fn get(&self, name: &str) -> Option<&'static dyn ClientKind> {
        self.0.iter().copied().find(|k| k.name() == name)
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.0.iter().map(|k| k.name()).collect()
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Registry").field(&self.names()).finish()
    }
}
