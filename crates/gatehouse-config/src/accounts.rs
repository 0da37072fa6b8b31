//! The system's user and group database, as `isolation` needs it to resolve an alias's
//! `user` and `group` to ids when the file is read: the [`Accounts`] trait, [`System`]
//! (getpwnam_r, getpwuid_r and getgrnam_r, through nix; NSS included, so LDAP or sssd
//! users resolve as they will for the workers), and, for the tests, a fixed table.

/// A user's entry: its uid and its primary group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UserEntry {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// Looks users and groups up. `Ok(None)`: no such entry; `Err`: the lookup itself failed
/// (the message says why, e.g. an NSS backend that cannot be reached).
pub(crate) trait Accounts {
    /// The user named `name` (getpwnam_r).
    fn user_by_name(&self, name: &str) -> Result<Option<UserEntry>, String>;
    /// The user with uid `uid` (getpwuid_r).
    fn user_by_uid(&self, uid: u32) -> Result<Option<UserEntry>, String>;
    /// The gid of the group named `name` (getgrnam_r).
    fn group_by_name(&self, name: &str) -> Result<Option<u32>, String>;
}

/// The machine's database.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct System;

/// A lookup's result: the "not found" errors that getpwnam(3) lists (some NSS backends
/// report a missing entry that way) are `None`, any other error is an error.
fn found<T, U>(r: nix::Result<Option<T>>, f: impl FnOnce(T) -> U) -> Result<Option<U>, String> {
    use nix::errno::Errno;
    match r {
        Ok(entry) => Ok(entry.map(f)),
        Err(Errno::ENOENT | Errno::ESRCH | Errno::EBADF | Errno::EPERM) => Ok(None),
        Err(e) => Err(e.desc().to_owned()),
    }
}

fn user_entry(u: nix::unistd::User) -> UserEntry {
    UserEntry { uid: u.uid.as_raw(), gid: u.gid.as_raw() }
}

impl Accounts for System {
    fn user_by_name(&self, name: &str) -> Result<Option<UserEntry>, String> {
        found(nix::unistd::User::from_name(name), user_entry)
    }

    fn user_by_uid(&self, uid: u32) -> Result<Option<UserEntry>, String> {
        found(nix::unistd::User::from_uid(uid.into()), user_entry)
    }

    fn group_by_name(&self, name: &str) -> Result<Option<u32>, String> {
        found(nix::unistd::Group::from_name(name), |g| g.gid.as_raw())
    }
}

#[cfg(test)]
pub(crate) mod table {
    //! A fixed database for the tests, so that they do not depend on the machine's.

    use super::{Accounts, UserEntry};

    /// Users: (name, uid, primary gid). `broken` (user and group) and uid [`BROKEN_UID`]
    /// fail to look up.
    const USERS: &[(&str, u32, u32)] =
        &[("root", 0, 0), ("www-data", 33, 33), ("app", 1000, 1001), ("nobody", 65534, 65534)];
    /// Groups: (name, gid).
    const GROUPS: &[(&str, u32)] =
        &[("root", 0), ("www-data", 33), ("app", 1001), ("staff", 50), ("nogroup", 65534)];
    /// The error of a lookup of `broken`.
    pub(crate) const BROKEN: &str = "Input/output error";
    /// A uid whose lookup fails.
    pub(crate) const BROKEN_UID: u32 = 4040;

    /// [`USERS`] and [`GROUPS`].
    #[derive(Debug, Clone, Copy, Default)]
    pub(crate) struct Table;

    fn user(entry: &(&str, u32, u32)) -> UserEntry {
        UserEntry { uid: entry.1, gid: entry.2 }
    }

    impl Accounts for Table {
        fn user_by_name(&self, name: &str) -> Result<Option<UserEntry>, String> {
            if name == "broken" {
                return Err(BROKEN.to_owned());
            }
            Ok(USERS.iter().find(|u| u.0 == name).map(user))
        }

        fn user_by_uid(&self, uid: u32) -> Result<Option<UserEntry>, String> {
            if uid == BROKEN_UID {
                return Err(BROKEN.to_owned());
            }
            Ok(USERS.iter().find(|u| u.1 == uid).map(user))
        }

        fn group_by_name(&self, name: &str) -> Result<Option<u32>, String> {
            if name == "broken" {
                return Err(BROKEN.to_owned());
            }
            Ok(GROUPS.iter().find(|g| g.0 == name).map(|g| g.1))
        }
    }
}
