//! The page shell, the small pieces every page uses, and the charts (inline
//! SVG, drawn on the server).

use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};
use outhook_dispatcher::db::attempt::HourlyOutcome;
use outhook_dispatcher::db::delivery::DeliveryStatus;

use super::{Brand, Ctx};

/// Which section of the navigation a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// Endpoints and their health.
    Endpoints,
    /// The delivery log.
    Deliveries,
}

/// A whole page: head, header with navigation, the notice of the last
/// action, and `body`.
pub fn page(ctx: &Ctx, title: &str, nav: Nav, notice: Option<&str>, body: Markup) -> Markup {
    let brand = &ctx.brand;
    let who = match ctx.scope.owner() {
        Some(owner) => html! { "Signed in as " strong { (owner) } },
        None => html! { "Operator: " strong { "every owner" } },
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, &ctx.href("/portal/assets/portal.css"), brand))
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    (brand_mark(brand, &ctx.href("/portal/assets/logo")))
                    nav aria-label="Sections" {
                        ul {
                            li { a href=(ctx.href("/portal")) aria-current=[(nav == Nav::Endpoints).then_some("page")] { "Endpoints" } }
                            li { a href=(ctx.href("/portal/deliveries")) aria-current=[(nav == Nav::Deliveries).then_some("page")] { "Delivery log" } }
                        }
                    }
                    div.who {
                        span { (who) }
                        form method="post" action=(ctx.href("/portal/logout")) {
                            input type="hidden" name="csrf" value=(ctx.csrf);
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                main #main {
                    @if let Some(n) = notice {
                        div.notice role="status" { (n) }
                    }
                    (body)
                }
                footer.foot {
                    "Times are UTC. "
                    @if let Some(help) = &brand.support_url { a href=(help) { "Help and support" } ". " }
                    "Powered by Outhook."
                }
            }
        }
    }
}

/// Every page's `<head>`: the stylesheet, then the brand's beside it.
fn head(title: &str, css: &str, brand: &Brand) -> Markup {
    let brand_css = css.replace("portal.css", "brand.css");
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="color-scheme" content="light dark";
            title { (title) " · " (brand.title) }
            link rel="stylesheet" href=(css);
            @if brand.primary.is_some() { link rel="stylesheet" href=(brand_css); }
        }
    }
}

/// The brand's logo (or a mark) and title.
pub fn brand_mark(brand: &Brand, logo_href: &str) -> Markup {
    html! {
        div.brand {
            @if brand.logo.is_some() {
                img.brand-logo src=(logo_href) alt="" height="28";
            } @else {
                span.logo aria-hidden="true" { "◆" }
            }
            span { (brand.title) }
        }
    }
}

/// A page without a session: sign-in and errors. `css` is the stylesheet's
/// address.
pub fn bare(css: &str, brand: &Brand, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, css, brand))
            body.bare {
                main #main.card.narrow { (body) }
            }
        }
    }
}

/// An error page.
pub fn error_page(css: &str, brand: &Brand, title: &str, message: &str) -> Markup {
    bare(
        css,
        brand,
        title,
        html! {
            (brand_mark(brand, &css.replace("portal.css", "logo")))
            h1 { (title) }
            p { (message) }
        },
    )
}

/// A time as `2026-11-23 14:05:09` with how long ago.
pub fn when(t: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(t.to_rfc3339()) title=(t.format("%Y-%m-%d %H:%M:%S%.3f UTC")) {
            (t.format("%Y-%m-%d %H:%M:%S"))
        }
        " " span.muted { "(" (ago(t, Utc::now())) ")" }
    }
}

/// An optional time, or a dash.
pub fn when_opt(t: Option<DateTime<Utc>>, none: &str) -> Markup {
    match t {
        Some(t) => when(t),
        None => html! { span.muted { (none) } },
    }
}

/// "3 min ago", "in 2 h".
pub fn ago(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - t).num_seconds();
    let (n, future) = if secs < 0 { (-secs, true) } else { (secs, false) };
    let text = match n {
        0..=9 => return "just now".to_owned(),
        10..=59 => format!("{n} s"),
        60..=3599 => format!("{} min", n / 60),
        3600..=86_399 => format!("{} h", n / 3600),
        _ => format!("{} d", n / 86_400),
    };
    if future {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// A delivery's status as a badge.
pub fn status_badge(status: DeliveryStatus) -> Markup {
    let (class, text) = match status {
        DeliveryStatus::Delivered => ("ok", "Delivered"),
        DeliveryStatus::Dead => ("bad", "Failed"),
        _ => ("wait", "Pending"),
    };
    html! { span class={"badge " (class)} { (text) } }
}

/// An attempt outcome as a badge.
pub fn outcome_badge(outcome: &str) -> Markup {
    let class = if outcome == "delivered" { "ok" } else { "bad" };
    html! { span class={"badge " (class)} { (outcome_label(outcome)) } }
}

/// An attempt outcome in words.
pub fn outcome_label(outcome: &str) -> &str {
    match outcome {
        "delivered" => "Delivered",
        "http_status" => "Error status",
        "redirect" => "Redirect",
        "timeout" => "Timeout",
        "connect" => "Connection failed",
        "dns" => "DNS failure",
        "tls" => "TLS failure",
        "address_refused" => "Address refused",
        "body_too_large" => "Body too large",
        "signing_failed" => "Signing failed",
        "unknown_endpoint" => "Unknown endpoint",
        "endpoint_disabled" => "Endpoint disabled",
        "invalid_url" => "Invalid URL",
        "lease_lost" => "Worker lost it repeatedly",
        "proxy" => "Proxy failed",
        "oauth2_token" => "No OAuth2 token",
        "connection_settings" => "Connection settings unusable",
        other => other,
    }
}

/// The colour of an outcome in the charts (each has a text label too).
fn outcome_colour(outcome: &str) -> &'static str {
    match outcome {
        "delivered" => "#15803d",
        "http_status" => "#b91c1c",
        "timeout" => "#b45309",
        "connect" | "dns" | "tls" => "#7e22ce",
        _ => "#475569",
    }
}

/// Counts per hour for the last `hours` hours (oldest first), split into
/// outcomes.
fn by_hour(buckets: &[HourlyOutcome], hours: i64, now: DateTime<Utc>) -> Vec<Vec<(&str, i64)>> {
    let hours = usize::try_from(hours).unwrap_or(24);
    let this_hour = now.timestamp() - now.timestamp().rem_euclid(3600);
    let mut out: Vec<Vec<(&str, i64)>> = vec![Vec::new(); hours];
    for b in buckets {
        let back = (this_hour - b.hour.timestamp()) / 3600;
        let Ok(back) = usize::try_from(back) else { continue };
        if back < hours {
            out[hours - 1 - back].push((b.outcome.as_str(), b.count));
        }
    }
    out
}

/// A small chart of the success rate per hour: one bar an hour, as tall as
/// the share of attempts delivered; hours without attempts are a dot.
pub fn success_spark(buckets: &[HourlyOutcome], hours: i64) -> Markup {
    let columns = by_hour(buckets, hours, Utc::now());
    let (ok, all) = columns.iter().flatten().fold((0, 0), |(ok, all), (o, n)| {
        (if *o == "delivered" { ok + n } else { ok }, all + n)
    });
    let label = if all == 0 {
        format!("No attempts in the last {hours} hours")
    } else {
        format!(
            "{} delivered of {all} attempts in the last {hours} hours",
            percent(ok, all)
        )
    };
    let width = columns.len() * 5;
    html! {
        div.spark {
            svg width=(width) height="24" viewBox={"0 0 " (width) " 24"} role="img" aria-label=(label) {
                title { (label) }
                @for (i, col) in columns.iter().enumerate() {
                    @let total: i64 = col.iter().map(|(_, n)| n).sum();
                    @let good: i64 = col.iter().filter(|(o, _)| *o == "delivered").map(|(_, n)| n).sum();
                    @if total == 0 {
                        rect x=(i * 5) y="22" width="4" height="2" fill="#cbd5e1" {}
                    } @else {
                        @let h = (24 * good / total).max(2);
                        @let colour = if good * 100 >= total * 95 { "#15803d" } else if good * 2 >= total { "#b45309" } else { "#b91c1c" };
                        rect x=(i * 5) y=(24 - h) width="4" height=(h) fill=(colour) {}
                    }
                }
            }
            span.spark-text { (if all == 0 { "no traffic".to_owned() } else { format!("{} ok", percent(ok, all)) }) }
        }
    }
}

/// `ok` of `all` as a percentage, never rounding up to 100 while anything
/// failed.
pub fn percent(ok: i64, all: i64) -> String {
    if all == 0 {
        return "–".to_owned();
    }
    let p = ok as f64 * 100.0 / all as f64;
    if ok < all && p > 99.9 {
        "99.9%".to_owned()
    } else if p >= 10.0 || p == 0.0 {
        format!("{p:.0}%")
    } else {
        format!("{p:.1}%")
    }
}

/// Attempts per hour, stacked by outcome, with a legend and the numbers as
/// a table for screen readers.
pub fn outcome_chart(buckets: &[HourlyOutcome], hours: i64) -> Markup {
    let now = Utc::now();
    let columns = by_hour(buckets, hours, now);
    let max = columns
        .iter()
        .map(|c| c.iter().map(|(_, n)| n).sum::<i64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let mut outcomes: Vec<(&str, i64)> = Vec::new();
    for (o, n) in columns.iter().flatten() {
        match outcomes.iter_mut().find(|(k, _)| k == o) {
            Some((_, total)) => *total += n,
            None => outcomes.push((o, *n)),
        }
    }
    outcomes.sort_by_key(|(o, n)| (*o != "delivered", -n));
    let bar = 600 / columns.len().max(1);
    let width = bar * columns.len();
    let height = 120_i64;
    let total: i64 = outcomes.iter().map(|(_, n)| n).sum();
    let label = format!(
        "Attempts per hour over the last {hours} hours: {total} in all{}",
        outcomes
            .iter()
            .map(|(o, n)| format!(", {n} {}", outcome_label(o).to_lowercase()))
            .collect::<String>()
    );
    html! {
        figure.chart {
            svg viewBox={"0 0 " (width) " " (height + 16)} role="img" aria-label=(label) {
                title { (label) }
                line x1="0" y1=(height) x2=(width) y2=(height) stroke="#cbd5e1" {}
                @for (i, col) in columns.iter().enumerate() {
                    @let mut y = height;
                    @for (o, n) in outcome_order(col) {
                        @let h = ((n * height) / max).max(1);
                        @let top = { y -= h; y };
                        rect x=(i * bar + 1) y=(top) width=(bar.saturating_sub(2).max(1)) height=(h) fill=(outcome_colour(o)) {}
                    }
                }
                text x="0" y=(height + 13) font-size="11" fill="#475569" { (format!("{hours} h ago")) }
                text x=(width) y=(height + 13) font-size="11" fill="#475569" text-anchor="end" { "now" }
            }
            figcaption {
                @if outcomes.is_empty() {
                    span.muted { "No attempts in this period." }
                } @else {
                    ul.legend {
                        @for (o, n) in &outcomes {
                            li {
                                svg width="10" height="10" aria-hidden="true" { rect width="10" height="10" fill=(outcome_colour(o)) {} }
                                " " (outcome_label(o)) " " strong { (n) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A column's outcomes, delivered at the bottom.
fn outcome_order<'a>(col: &'a [(&'a str, i64)]) -> Vec<(&'a str, i64)> {
    let mut v = col.to_vec();
    v.sort_by_key(|(o, _)| (*o != "delivered", *o));
    v
}

/// The hidden CSRF field every state-changing form carries.
pub fn csrf_field(ctx: &Ctx) -> Markup {
    html! { input type="hidden" name="csrf" value=(ctx.csrf); }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_never_round_a_failure_away() {
        assert_eq!(percent(9999, 10000), "99.9%");
        assert_eq!(percent(10000, 10000), "100%");
        assert_eq!(percent(1, 20), "5.0%");
        assert_eq!(percent(0, 3), "0%");
        assert_eq!(percent(0, 0), "–");
    }

    #[test]
    fn ago_reads_both_ways() {
        let now = Utc::now();
        assert_eq!(ago(now - chrono::Duration::minutes(3), now), "3 min ago");
        assert_eq!(ago(now + chrono::Duration::hours(2), now), "in 2 h");
        assert_eq!(ago(now, now), "just now");
    }
}
