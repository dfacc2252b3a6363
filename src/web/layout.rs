//! The page shell (head, navigation, CSS) and the HTML error page.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};

/// Phone first: one column, nothing wider than the screen; wide tables scroll inside their
/// own box (`.scroll`), never the page.
const CSS: &str = r#"
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:.5rem .75rem}
header nav{max-width:64rem;margin:0 auto;display:flex;flex-wrap:wrap;gap:.25rem 1rem;align-items:baseline}
header a{color:#fff;text-decoration:none}
header .brand{font-weight:700;margin-right:auto}
main{max-width:64rem;margin:0 auto;padding:.75rem}
h1{font-size:1.35rem;margin:.25rem 0 .5rem;overflow-wrap:anywhere}
h2{font-size:1.1rem;margin:1.25rem 0 .4rem}
section{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:.6rem .75rem;margin:.75rem 0}
p{overflow-wrap:anywhere}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.3rem .45rem;border-bottom:1px solid #e7e9ee;vertical-align:top;overflow-wrap:break-word}
th{font-weight:600;font-size:.85rem;color:#4a5263}
td.num{text-align:right;white-space:nowrap}
.muted{color:#6b7385}
.badge{display:inline-block;padding:0 .4rem;border-radius:3px;font-size:.8rem;font-weight:600;white-space:nowrap}
.state-firing,.severity-critical{background:#fde2e1;color:#a1160f}
.state-pending,.severity-warning{background:#fff1cc;color:#7a5400}
.state-resolved,.state-inactive,.severity-info{background:#e3eefc;color:#1f4f91}
.silenced{background:#ececec;color:#444}
.notice{background:#e6f6ea;border-color:#9fd3ad}
.error{background:#fdecec;border-color:#f0a5a5}
svg.chart{width:100%;height:auto;display:block;margin:.25rem 0 .75rem}
svg.chart .frame{fill:#fff;stroke:#d5d9e0}
svg.chart .band{fill:#2f7de1;fill-opacity:.18;stroke:none}
svg.chart .alert-interval{fill:#e5483d;fill-opacity:.12}
svg.chart .zero{stroke:#888;stroke-dasharray:3 3}
svg.chart .series{fill:none;stroke-width:2}
svg.chart circle.series{stroke:none}
svg.chart .series-cost{stroke:#1d2330}svg.chart circle.series-cost{fill:#1d2330}
svg.chart .series-numerator{stroke:#c2410c}svg.chart circle.series-numerator{fill:#c2410c}
svg.chart .series-denominator{stroke:#0f766e}svg.chart circle.series-denominator{fill:#0f766e}
svg.chart text{font-size:14px;fill:#4a5263}
svg.chart .no-data{font-size:14px}
svg.sparkline{fill:none;stroke:#1d2330;stroke-width:1.5;vertical-align:middle}
svg.sparkline circle{fill:#1d2330;stroke:none}
form label{display:block;margin:.4rem 0 .15rem;font-weight:600}
form input{width:100%;max-width:24rem;padding:.35rem;font:inherit}
form button{margin-top:.6rem;padding:.4rem .9rem;font:inherit}
dl{display:grid;grid-template-columns:minmax(6rem,max-content) 1fr;gap:.2rem .75rem;margin:0}
dt{font-weight:600;color:#4a5263}dd{margin:0;overflow-wrap:anywhere}
@media (max-width:40rem){
table.stack thead{display:none}
table.stack tr{display:block;border-bottom:1px solid #dde1e7;padding:.3rem 0}
table.stack td{display:block;border:0;padding:.1rem 0}
table.stack td[data-label]::before{content:attr(data-label) ": ";font-weight:600;color:#4a5263}
table.stack td.num{text-align:left}
}
"#;

/// The whole page around `body`.
pub fn page(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · spendwatch" }
                style { (PreEscaped(CSS)) }
            }
            body {
                header {
                    nav {
                        a.brand href="/" { "spendwatch" }
                        a href="/" { "Overview" }
                        a href="/rules" { "Rules" }
                        a href="/sources" { "Sources" }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A page that failed: the status and one sentence saying why (and what to do).
#[derive(Debug)]
pub struct PageError {
    pub status: StatusCode,
    pub message: String,
}

impl PageError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        PageError {
            status,
            message: message.into(),
        }
    }
    /// A failure inside spendwatch: logged, not shown.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(error = %error, "Rendering a page failed.");
        PageError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error (see the spendwatch log)",
        )
    }
}

impl From<crate::store::StoreError> for PageError {
    fn from(e: crate::store::StoreError) -> Self {
        PageError::internal(e)
    }
}

impl From<crate::server::ApiError> for PageError {
    fn from(e: crate::server::ApiError) -> Self {
        use crate::server::ApiError;
        match e {
            ApiError::BadRequest(m) | ApiError::NotFound(m) => {
                PageError::new(StatusCode::BAD_REQUEST, m)
            }
            ApiError::Unauthorized(m) => PageError::new(StatusCode::UNAUTHORIZED, m),
            ApiError::Forbidden(m) => PageError::new(StatusCode::FORBIDDEN, m),
            ApiError::Internal(m) => PageError::internal(m),
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let title = self
            .status
            .canonical_reason()
            .unwrap_or("error")
            .to_string();
        let body = page(
            &title,
            html! {
                h1 { (self.status.as_u16()) " " (title) }
                section.error { p { (self.message) } }
                p { a href="/" { "Back to the overview" } }
            },
        );
        (self.status, Html(body.into_string())).into_response()
    }
}

/// `firing` etc. as a coloured badge.
pub fn badge(kind: &str, text: &str) -> Markup {
    html! { span class={ "badge " (kind) "-" (text) } { (text) } }
}
