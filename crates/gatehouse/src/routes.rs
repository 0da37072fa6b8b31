//! The route table as text, for `gatehouse check` and `gatehouse routes`, and the
//! explanation of one URL: which alias wins and why, SCRIPT_NAME, PATH_INFO, the plugin
//! file, or why it is 400/403/404. It uses the same [`mounts`](crate::request::route) code the server
//! does, so what it says is what the server does (short of loading the plugin).

use std::fmt::Write as _;

use gatehouse_config::{AliasKind, Config};

use crate::request::route::{self, GroupMiss, Route, Table};

/// The route table: one line per alias in the order tried.
pub fn table(config: &Config) -> String {
    let mut out = String::new();
    let file = config.file.display();
    let width = config.aliases.iter().map(|a| shown_url(a).len()).max().unwrap_or(3);
    let _ = writeln!(out, "{:<3} {:<width$}  {:<5}  PATH (where declared)", "#", "URL", "KIND");
    for (i, a) in config.aliases.iter().enumerate() {
        let kind = match a.kind {
            _ if a.url_match.is_some() => "match",
            AliasKind::App => "app",
            AliasKind::Group => "group",
        };
        let mut flags = Vec::new();
        if a.develop_mode {
            flags.push("develop_mode".to_owned());
        }
        if !a.env.is_empty() {
            flags.push(format!(
                "env: {}",
                a.env.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(",")
            ));
        }
        if let gatehouse_config::Isolation::Process(p) = &a.isolation {
            let user = p.user.as_deref().map(|u| format!(" as {u}")).unwrap_or_default();
            flags.push(format!("{} worker processes × {} threads{user}", p.processes, a.threads));
        } else {
            // (`auto`, the default, is not shown: it depends on each plugin's promise.)
            match a.dispatch {
                gatehouse_config::Dispatch::Auto => {}
                gatehouse_config::Dispatch::Pool => flags.push("dispatch: pool".to_owned()),
                gatehouse_config::Dispatch::Inline => flags.push("dispatch: inline".to_owned()),
            }
        }
        let flags =
            if flags.is_empty() { String::new() } else { format!("  [{}]", flags.join("; ")) };
        let _ = writeln!(
            out,
            "{:<3} {:<width$}  {:<5}  {} ({file}:{}:{}){flags}",
            i + 1,
            shown_url(a),
            kind,
            a.path.display(),
            a.pos.line,
            a.pos.column,
        );
    }
    for s in &config.statics {
        let _ = writeln!(
            out,
            "-   {:<width$}  {:<5}  {} ({file}:{}:{})  [files, before any alias]",
            format!("{}/...", s.url.trim_end_matches('/')),
            "static",
            s.path.display(),
            s.pos.line,
            s.pos.column,
        );
    }
    if config.aliases.is_empty() && config.statics.is_empty() {
        out.push_str("(no aliases: every URL answers 404)\n");
    }
    out
}

/// An alias's URL as the table shows it: a single app as written (`/h/`, written with its
/// slash, serves `/h/...` but not `/h`), a group as `URL/NAME`.
/// An alias's URL as the table shows it: its pattern, or `~REGEX` for a `url_match`.
fn shown_url(a: &gatehouse_config::Alias) -> String {
    match &a.url_match {
        Some(re) => format!("~{re}"),
        None => url_pattern(&a.url, a.kind, a.trailing_slash),
    }
}

fn url_pattern(url: &str, kind: AliasKind, trailing_slash: bool) -> String {
    match kind {
        AliasKind::App if trailing_slash && url != "/" => format!("{url}/"),
        AliasKind::App => url.to_owned(),
        AliasKind::Group => format!("{}/NAME", url.trim_end_matches('/')),
    }
}

/// Takes the path out of what a user typed: a path, a path with a query, or a full URL.
fn url_path(url: &str) -> &str {
    let rest = match url.find("://") {
        Some(i) => {
            let after = &url[i + 3..];
            after.find('/').map_or("/", |j| &after[j..])
        }
        None => url,
    };
    rest.split(['?', '#']).next().unwrap_or(rest)
}

/// Explains how the server answers `url`.
pub fn explain(config: &Config, url: &str) -> String {
    let table = Table::from_config(config);
    let mut out = String::new();
    let raw = url_path(url);
    let _ = writeln!(out, "URL path:      {raw}");
    let path = match route::normalize(raw.as_bytes()) {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(out, "answer:        {} ({})", e.status(), e.reason());
            return out;
        }
    };
    let shown = String::from_utf8_lossy(&path);
    if shown != raw {
        let _ = writeln!(out, "normalised:    {shown}");
    }
    if let Some((dir, rest)) = crate::http::static_files::covering(&config.statics, &path) {
        let _ = writeln!(out, "static:        {} (before any alias)", dir.url);
        let answer = match crate::http::static_files::resolve(&dir.path, rest) {
            Ok(file) => format!("the file {} (GET and HEAD)", file.display()),
            Err(a) => format!("{} ({})", a.status, a.message),
        };
        let _ = writeln!(out, "answer:        {answer}");
        return out;
    }
    let route = table.route(&path);
    let mount = match route {
        Route::App { mount, .. }
        | Route::Group { mount, .. }
        | Route::GroupIndex { mount }
        | Route::Match { mount, .. } => Some(mount),
        Route::NoMatch => None,
    };
    let Some(mount) = mount else {
        let _ = writeln!(
            out,
            "answer:        404: none of the {} aliases matches (an alias matches its URL and what \
             is under it, at a / boundary, case-sensitively)",
            config.aliases.len()
        );
        return out;
    };
    let a = &config.aliases[mount];
    let _ = writeln!(
        out,
        "alias:         #{} {} ({}:{}:{})",
        mount + 1,
        shown_url(a),
        config.file.display(),
        a.pos.line,
        a.pos.column
    );
    let why = if mount == 0 {
        "it is the first alias, and aliases are tried in the order declared".to_owned()
    } else {
        let earlier =
            if mount == 1 { "#1 does not".to_owned() } else { format!("#1..#{mount} do not") };
        format!("aliases are tried in the order declared; {earlier} match")
    };
    let _ = writeln!(out, "why:           {why}");
    if let Some(file) = &a.hooks.access_script {
        let _ = writeln!(
            out,
            "access:        {}: allow_access first (403 if it refuses)",
            file.display()
        );
    }
    if let Some(file) = &a.hooks.auth_user_script {
        let _ = writeln!(
            out,
            "auth:          {}: check_password of Basic credentials (401, realm {:?}, until \
             they pass)",
            file.display(),
            a.hooks.auth_realm
        );
    }
    match route {
        Route::App { script_name, path_info, .. } => {
            let _ = writeln!(out, "SCRIPT_NAME:   {:?}", String::from_utf8_lossy(script_name));
            let _ = writeln!(out, "PATH_INFO:     {:?}", String::from_utf8_lossy(path_info));
            let exists = a.path.is_file();
            let _ = writeln!(
                out,
                "{}{}{}",
                file_label(config, &a.path),
                a.path.display(),
                if exists { "" } else { " (does not exist yet)" }
            );
            handler_line(&mut out, config, &a.path);
            let answer = if exists { "served by the app" } else { "404 until the file appears" };
            let _ = writeln!(out, "answer:        {answer}");
        }
        Route::Group { name, script_name, path_info, .. } => {
            let _ = writeln!(out, "plugin NAME:   {:?}", String::from_utf8_lossy(name));
            let _ = writeln!(out, "SCRIPT_NAME:   {:?}", String::from_utf8_lossy(script_name));
            let _ = writeln!(out, "PATH_INFO:     {:?}", String::from_utf8_lossy(path_info));
            match std::fs::canonicalize(&a.path) {
                Err(e) => {
                    let _ = writeln!(
                        out,
                        "answer:        404: the folder {} cannot be opened: {e}",
                        a.path.display()
                    );
                }
                Ok(dir) => match route::resolve_group_file(&dir, name) {
                    Ok(file) => {
                        let _ = writeln!(out, "{}{}", file_label(config, &file), file.display());
                        handler_line(&mut out, config, &file);
                        let _ = writeln!(
                            out,
                            "answer:        served by the app (404 if it does not load)"
                        );
                    }
                    Err(GroupMiss::Forbidden(why)) => {
                        let _ = writeln!(out, "answer:        403: {why}");
                    }
                    Err(GroupMiss::NotFound(why)) => {
                        let _ = writeln!(out, "answer:        404: {why}");
                    }
                },
            }
        }
        Route::Match { script_name, path_info, file, .. } => {
            let _ = writeln!(
                out,
                "SCRIPT_NAME:   {:?} (the match)",
                String::from_utf8_lossy(script_name)
            );
            let _ = writeln!(out, "PATH_INFO:     {:?}", String::from_utf8_lossy(path_info));
            let exists = file.is_file();
            let _ = writeln!(
                out,
                "{}{}{}",
                file_label(config, &file),
                file.display(),
                if exists { "" } else { " (does not exist)" }
            );
            handler_line(&mut out, config, &file);
            let answer = if exists { "served by the app (404 if it does not load)" } else { "404" };
            let _ = writeln!(out, "answer:        {answer}");
        }
        Route::GroupIndex { .. } => {
            let _ = writeln!(out, "answer:        403: a directory group's folder is not an app");
        }
        Route::NoMatch => {}
    }
    out
}

/// `plugin:` for a plugin file, `script:` for a file a handler serves.
fn file_label(config: &Config, file: &std::path::Path) -> &'static str {
    if config.handler_for(file).is_some() { "script:        " } else { "plugin:        " }
}

/// For a file a handler serves: which handler, and its plugin.
fn handler_line(out: &mut String, config: &Config, file: &std::path::Path) {
    if let Some(h) = config.handler_for(file) {
        let _ = writeln!(
            out,
            "handler:       `{}` ({}:{}): served by {} with SCRIPT_FILENAME set to the script",
            h.suffix,
            config.file.display(),
            h.pos.line,
            h.plugin.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::{url_path, url_pattern};
    use gatehouse_config::AliasKind;

    #[test]
    fn aliases_show_as_written() {
        for (url, kind, slash, want) in [
            ("/h", AliasKind::App, false, "/h"),
            ("/h", AliasKind::App, true, "/h/"),
            ("/", AliasKind::App, true, "/"),
            ("/wsgi", AliasKind::Group, true, "/wsgi/NAME"),
            ("/", AliasKind::Group, true, "/NAME"),
        ] {
            assert_eq!(url_pattern(url, kind, slash), want, "{url} {kind:?} {slash}");
        }
    }

    #[test]
    fn url_paths_from_what_users_type() {
        for (input, want) in [
            ("/myapp", "/myapp"),
            ("/myapp?id=A001", "/myapp"),
            ("http://127.0.0.1:8080/wsgi/hello/x?y", "/wsgi/hello/x"),
            ("http://example.com", "/"),
            ("/a#frag", "/a"),
        ] {
            assert_eq!(url_path(input), want, "{input}");
        }
    }
}
