//! The provider's brand on the portal: its title, logo, primary colour and
//! support link. The logo is served by the server itself and the colour
//! comes in a stylesheet of its own, so the portal's CSP stays as strict as
//! before (`style-src 'self'; img-src 'self' data:`, no script).

use std::path::Path;

/// The largest logo accepted, in bytes.
pub const MAX_LOGO_BYTES: usize = 256 * 1024;

/// The portal's brand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Brand {
    /// The name in the header and in every page's title.
    pub title: String,
    /// The logo shown beside the title.
    pub logo: Option<Logo>,
    /// The primary colour, `#rrggbb`: buttons, and links where it is dark
    /// enough to read on white.
    pub primary: Option<[u8; 3]>,
    /// Where customers ask for help (`https://…` or `mailto:…`).
    pub support_url: Option<String>,
}

impl Default for Brand {
    fn default() -> Self {
        Self {
            title: "Webhooks".to_owned(),
            logo: None,
            primary: None,
            support_url: None,
        }
    }
}

/// A logo image.
#[derive(Clone, PartialEq, Eq)]
pub struct Logo {
    /// `image/png`, `image/jpeg` or `image/svg+xml`.
    pub content_type: &'static str,
    /// The image.
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for Logo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Logo({}, {} bytes)", self.content_type, self.bytes.len())
    }
}

/// Why a brand setting was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrandError {
    /// Not a `#rrggbb` colour.
    #[error("--portal-primary-color {0:?}: give a colour as #rrggbb, such as #0a7d5a")]
    Color(String),
    /// The logo could not be used.
    #[error("--portal-logo {path}: {reason}")]
    Logo {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// Not an https or mailto address.
    #[error("--portal-support-url {0:?}: give an https:// or mailto: address")]
    SupportUrl(String),
    /// An empty or overlong title.
    #[error("--portal-title: 1 to 60 characters, none of them control characters")]
    Title,
}

impl Brand {
    /// Checks and assembles the brand from its settings.
    pub fn new(
        title: &str,
        logo: Option<&Path>,
        primary: Option<&str>,
        support_url: Option<&str>,
    ) -> Result<Self, BrandError> {
        let title = title.trim();
        if title.is_empty() || title.chars().count() > 60 || title.chars().any(char::is_control) {
            return Err(BrandError::Title);
        }
        let primary = primary.map(parse_color).transpose()?;
        let support_url = support_url
            .map(|u| {
                let ok = (u.starts_with("https://") || u.starts_with("mailto:"))
                    && u.len() <= 500
                    && url::Url::parse(u).is_ok();
                if ok {
                    Ok(u.to_owned())
                } else {
                    Err(BrandError::SupportUrl(u.to_owned()))
                }
            })
            .transpose()?;
        let logo = logo.map(Logo::load).transpose()?;
        Ok(Self {
            title: title.to_owned(),
            logo,
            primary,
            support_url,
        })
    }

    /// The stylesheet that applies the primary colour (empty without one).
    pub fn css(&self) -> String {
        let Some(rgb) = self.primary else {
            return "/* no brand colour set */\n".to_owned();
        };
        let hex = format!("#{:02x}{:02x}{:02x}", rgb[0], rgb[1], rgb[2]);
        let white = contrast(rgb, [255, 255, 255]);
        let dark = [17, 24, 39];
        let ink = if white >= contrast(rgb, dark) {
            "#ffffff"
        } else {
            "#111827"
        };
        let mut css = format!(":root {{ --accent: {hex}; --accent-ink: {ink}; }}\n");
        // Links take the colour only where it reads on the light cards.
        if white >= 4.5 {
            css.push_str(&format!(
                "@media (prefers-color-scheme: light) {{ :root {{ --link: {hex}; }} }}\n"
            ));
        }
        css
    }
}

fn parse_color(text: &str) -> Result<[u8; 3], BrandError> {
    let bad = || BrandError::Color(text.to_owned());
    let hex = text.strip_prefix('#').ok_or_else(bad)?;
    if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| bad());
    Ok([byte(0)?, byte(2)?, byte(4)?])
}

/// WCAG relative luminance.
fn luminance(rgb: [u8; 3]) -> f64 {
    let channel = |c: u8| {
        let c = f64::from(c) / 255.0;
        if c <= 0.03928 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    0.2126 * channel(rgb[0]) + 0.7152 * channel(rgb[1]) + 0.0722 * channel(rgb[2])
}

/// WCAG contrast ratio between two colours.
fn contrast(a: [u8; 3], b: [u8; 3]) -> f64 {
    let (la, lb) = (luminance(a), luminance(b));
    (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
}

impl Logo {
    /// Reads a PNG, JPEG or SVG logo of at most 256 KiB.
    pub fn load(path: &Path) -> Result<Self, BrandError> {
        let refuse = |reason: &str| BrandError::Logo {
            path: path.display().to_string(),
            reason: reason.to_owned(),
        };
        let size = std::fs::metadata(path).map_err(|e| refuse(&e.to_string()))?.len();
        if size > MAX_LOGO_BYTES as u64 {
            return Err(refuse(&format!("larger than {MAX_LOGO_BYTES} bytes")));
        }
        let bytes = std::fs::read(path).map_err(|e| refuse(&e.to_string()))?;
        let content_type = if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            "image/png"
        } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
            "image/jpeg"
        } else if std::str::from_utf8(&bytes).is_ok_and(|t| t.contains("<svg")) {
            "image/svg+xml"
        } else {
            return Err(refuse("not a PNG, JPEG or SVG image"));
        };
        Ok(Self { content_type, bytes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_are_checked_and_get_a_readable_ink() {
        for bad in ["0a7d5a", "#0a7d5", "#0a7d5g", "red", "#0a7d5a;}"] {
            assert!(parse_color(bad).is_err(), "{bad}");
        }
        let dark = Brand::new("Acme", None, Some("#0a3d2a"), None).unwrap().css();
        assert!(dark.contains("--accent: #0a3d2a; --accent-ink: #ffffff"), "{dark}");
        assert!(dark.contains("--link: #0a3d2a"), "{dark}");
        let light = Brand::new("Acme", None, Some("#ffd84d"), None).unwrap().css();
        assert!(light.contains("--accent-ink: #111827"), "{light}");
        assert!(
            !light.contains("--link"),
            "a pale colour must not colour links: {light}"
        );
    }

    #[test]
    fn titles_links_and_logos_are_checked() {
        assert!(Brand::new(" ", None, None, None).is_err());
        assert!(Brand::new(&"x".repeat(61), None, None, None).is_err());
        assert!(Brand::new("A", None, None, Some("javascript:alert(1)")).is_err());
        assert!(Brand::new("A", None, None, Some("http://help.example")).is_err());
        assert!(Brand::new("A", None, None, Some("mailto:help@acme.example")).is_ok());
        let dir = std::env::temp_dir().join(format!("outhook-brand-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = dir.join("logo.txt");
        std::fs::write(&text, "hello").unwrap();
        assert!(Brand::new("A", Some(&text), None, None).is_err());
        let svg = dir.join("logo.svg");
        std::fs::write(&svg, "<svg xmlns='http://www.w3.org/2000/svg'/>").unwrap();
        let brand = Brand::new("A", Some(&svg), None, None).unwrap();
        assert_eq!(brand.logo.map(|l| l.content_type), Some("image/svg+xml"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
