//! HTML pages: the one template environment (minijinja, auto-escaping every value), the answer
//! a page is sent with (no caching, no framing, a content security policy that allows this
//! server's own scripts and styles only), and the console's static files (the stylesheet and
//! the vendored scripts, compiled into the binary).

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use minijinja::Environment;

/// Every template, by name, compiled into the binary.
const TEMPLATES: &[(&str, &str)] = &[
    (
        "layout.html",
        include_str!("../../../../web/templates/layout.html"),
    ),
    (
        "login.html",
        include_str!("../../../../web/templates/login.html"),
    ),
    (
        "setup.html",
        include_str!("../../../../web/templates/setup.html"),
    ),
    (
        "console/base.html",
        include_str!("../../../../web/templates/console/base.html"),
    ),
    (
        "console/macros.html",
        include_str!("../../../../web/templates/console/macros.html"),
    ),
    (
        "console/error.html",
        include_str!("../../../../web/templates/console/error.html"),
    ),
    (
        "console/worklist.html",
        include_str!("../../../../web/templates/console/worklist.html"),
    ),
    (
        "console/measures.html",
        include_str!("../../../../web/templates/console/measures.html"),
    ),
    (
        "console/transition.html",
        include_str!("../../../../web/templates/console/transition.html"),
    ),
    (
        "console/transition_person.html",
        include_str!("../../../../web/templates/console/transition_person.html"),
    ),
    (
        "console/readiness.html",
        include_str!("../../../../web/templates/console/readiness.html"),
    ),
    (
        "console/referral.html",
        include_str!("../../../../web/templates/console/referral.html"),
    ),
    (
        "console/patients.html",
        include_str!("../../../../web/templates/console/patients.html"),
    ),
    (
        "console/patient.html",
        include_str!("../../../../web/templates/console/patient.html"),
    ),
    (
        "console/findcare.html",
        include_str!("../../../../web/templates/console/findcare.html"),
    ),
    (
        "console/slots.html",
        include_str!("../../../../web/templates/console/slots.html"),
    ),
    (
        "console/family.html",
        include_str!("../../../../web/templates/console/family.html"),
    ),
    (
        "console/identity.html",
        include_str!("../../../../web/templates/console/identity.html"),
    ),
    (
        "console/admin.html",
        include_str!("../../../../web/templates/console/admin.html"),
    ),
    (
        "console/created.html",
        include_str!("../../../../web/templates/console/created.html"),
    ),
];

/// The console's static files: (name, content type, bytes).
const STATIC: &[(&str, &str, &[u8])] = &[
    (
        "console.css",
        "text/css; charset=utf-8",
        include_bytes!("../../../../web/static/console.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../../../../web/static/favicon.svg"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../../web/static/console.js"),
    ),
    (
        "leaflet.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../../web/static/vendor/leaflet/leaflet.js"),
    ),
    (
        "leaflet.css",
        "text/css; charset=utf-8",
        include_bytes!("../../../../web/static/vendor/leaflet/leaflet.css"),
    ),
    (
        "ct-counties.json",
        "application/json",
        include_bytes!("../../../../web/static/vendor/ct-counties.json"),
    ),
];

pub fn templates() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("template {name}: {e}"));
        }
        env
    })
}

/// A rendered page with the headers every page carries (and `cookies` to set).
pub fn page(status: StatusCode, name: &str, ctx: minijinja::Value, cookies: &[String]) -> Response {
    let html = templates()
        .get_template(name)
        .and_then(|t| t.render(ctx))
        .unwrap_or_else(|e| {
            tracing::error!(template = name, error = %e, "a page could not be rendered");
            "<!doctype html><title>Error</title><p>This page could not be shown.</p>".to_string()
        });
    let mut resp = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response();
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    resp
}

/// `GET /static/{name}`: the stylesheet and the vendored scripts.
pub async fn asset(Path(name): Path<String>) -> Response {
    match STATIC.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "public, max-age=3600"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            *bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::context;

    fn render(name: &str, page: minijinja::Value) -> String {
        let me = context! { user => "<b>u</b>", roles => "", nav => Vec::<minijinja::Value>::new(), csrf => "t" };
        templates()
            .get_template(name)
            .unwrap()
            .render(context! { title => "T", me => me, page => page, flash => "<i>done</i>" })
            .unwrap_or_else(|e| panic!("{name}: {e:#}"))
    }

    /// The pages render and escape what they are given (the others are rendered with real
    /// data by the console's tests).
    #[test]
    fn pages_render_and_escape() {
        let html = render(
            "console/created.html",
            context! { what => "user", name => "dora", secret_label => "Password", secret => "s<3" },
        );
        assert!(html.contains("id=\"created-secret\">s&lt;3<"), "{html}");
        assert!(!html.contains("<i>done</i>") && !html.contains("<b>u</b>"));
        let html = render(
            "console/error.html",
            context! { heading => "Not found", words => "<script>x</script>", status => 404 },
        );
        assert!(html.contains("&lt;script&gt;"));
    }
}
