//! The page shell every console page shares: title, navigation (only what the user's role may
//! read), the logout form, and a skip link for keyboard users.

use maud::{DOCTYPE, Markup, html};

use super::web::User;
use crate::services::Rpc;

/// The navigation's entries: path, label, and the RPC whose right shows it.
const NAV: [(&str, &str, Rpc); 9] = [
    ("/fleet", "Fleet", Rpc::ListSites),
    ("/tenants", "Tenants", Rpc::ListTenants),
    ("/workloads", "Workloads", Rpc::ListWorkloads),
    ("/reservations", "Reservations", Rpc::ListWorkloads),
    ("/what-if", "What-if", Rpc::DryRun),
    ("/audit", "Audit", Rpc::ListSites),
    ("/utilisation", "Utilisation", Rpc::ListSites),
    ("/usage", "Usage", Rpc::ExportUsage),
    ("/cost", "Cost", Rpc::ListSites),
];

/// Where a user lands after login: the first page their role may read.
pub fn home(user: &User) -> &'static str {
    NAV.iter()
        .find(|(_, _, rpc)| user.caller().may_call(*rpc))
        .map_or("/tenants", |(path, _, _)| path)
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Meridian" }
            link rel="stylesheet" href="/assets/console.css";
        }
    }
}

/// A full page for a logged-in user; `active` is the navigation entry to mark.
pub fn page(title: &str, user: &User, active: &str, body: Markup) -> Markup {
    let caller = user.caller();
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                a.skip href="#main" { "Skip to content" }
                header {
                    a.brand href="/" { "Meridian" }
                    nav aria-label="Main" {
                        ul {
                            @for (path, label, rpc) in NAV {
                                @if caller.may_call(rpc) {
                                    li {
                                        @if path == active {
                                            a href=(path) aria-current="page" { (label) }
                                        } @else {
                                            a href=(path) { (label) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    form.logout method="post" action="/logout" {
                        span.who { (caller.user) " (" (caller.role) ")" }
                        input type="hidden" name="csrf" value=(user.session.csrf);
                        button type="submit" { "Log out" }
                    }
                }
                main id="main" {
                    h1 { (title) }
                    (body)
                }
                script src="/assets/console.js" defer {}
            }
        }
    }
}

/// A page outside a session (login, errors).
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header { a.brand href="/" { "Meridian" } }
                main id="main" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A hidden CSRF field for a form of `user`'s session.
pub fn csrf(user: &User) -> Markup {
    html! { input type="hidden" name="csrf" value=(user.session.csrf); }
}

/// Links to the previous and next page of a list, keeping the other query parameters.
pub fn pager(base: &str, query: &str, page: usize, has_next: bool) -> Markup {
    let sep = if query.is_empty() { "" } else { "&" };
    html! {
        nav.pager aria-label="Pages" {
            @if page > 1 {
                a href={ (base) "?" (query) (sep) "page=" (page - 1) } rel="prev" { "Previous" }
            }
            span { "Page " (page) }
            @if has_next {
                a href={ (base) "?" (query) (sep) "page=" (page + 1) } rel="next" { "Next" }
            }
        }
    }
}
