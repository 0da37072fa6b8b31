//! Loading code: the private copy a plugin is loaded from ([`staging`]) and `dlopen`,
//! descriptor checks, `init` and `shutdown` ([`load`]).

pub mod load;
pub mod staging;
#[cfg(test)]
pub(crate) mod test_plugins;
