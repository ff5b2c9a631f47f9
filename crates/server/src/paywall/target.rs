//! The canonical request target: the one form of a request's path that prices are matched on
//! and that the inner service (an axum router, the gateway's upstream) receives.
//!
//! A paywall that matches prices on one spelling of a path while the service behind it
//! resolves another spelling to the same resource gives that resource away: `/x/../weather`,
//! `/%77eather` or `/weather;x` match no priced route, yet many upstreams serve `/weather` for
//! them. So every request's path goes through [`canonical_path`] before anything else:
//!
//! - percent-escapes are decoded wherever decoding cannot change the path's structure
//!   (unreserved characters, sub-delimiters other than `;`, `:` and `@`); the rest stay
//!   escaped with upper-case hex (`%3F`, `%25`, `%20`, non-ASCII UTF-8);
//! - dot segments are removed after decoding (RFC 3986 §5.2.4, so `%2e%2e` counts), and empty
//!   segments collapse (`//` → `/`, like nginx's `merge_slashes`);
//! - forms an upstream may read in ways that cannot be mirrored here are refused
//!   ([`TargetError`]): an encoded `/`, a backslash, control characters, invalid or double
//!   percent-encoding, `;` path parameters, a `..` above the root, a segment of only dots and
//!   spaces, bytes that are not UTF-8, and characters whose compatibility form (NFKC) or
//!   Windows "best fit" mapping is path syntax (`／`, `．`, `‥`, `∕`, `＼` …).
//!
//! Route matching then compares a looser *match key* of the canonical path ([`match_key`]):
//! case-folded, NFKC-normalised, `+` read as a space, without a trailing slash, and without
//! `::$DATA` or trailing dots and spaces in a segment (Windows drops them), and cut before an
//! encoded `?` or `#` (an upstream that decodes the target before splitting off the query
//! routes `/weather%3Fx` as `/weather`). Equivalences that upstreams disagree on are priced, not
//! refused: charging for a spelling the upstream would not serve is safe, serving free a
//! spelling it does serve is not.

use axum::body::Body;
use axum::response::Response;
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, StatusCode, Uri};
use unicode_normalization::UnicodeNormalization;

/// Why a request target has no canonical form; the paywall answers `400` to it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Not an absolute path (`*`, an authority, or a relative path).
    #[error("the request target must be an absolute path starting with `/`")]
    NotAbsolutePath,
    /// A `%` not followed by two hex digits.
    #[error("invalid percent-escape at byte {at} of the path")]
    InvalidEscape {
        /// Byte offset of the `%`.
        at: usize,
    },
    /// `%2F`: upstreams disagree on whether it separates segments.
    #[error("encoded `/` (%2F) in the path")]
    EncodedSlash,
    /// `\` or `%5C`: many servers read it as `/`.
    #[error("backslash (raw or %5C) in the path")]
    Backslash,
    /// A control character, raw or encoded (`%00`, `%0A`, …).
    #[error("control character {0:#04x} in the path")]
    ControlCharacter(u8),
    /// `%25` followed by a hex pair: an upstream that decodes twice sees another path.
    #[error("double percent-encoding (`%25` followed by a hex pair) in the path")]
    DoubleEncoding,
    /// `;` (raw or `%3B`): Tomcat, Spring and Jetty strip `;params` from segments.
    #[error("`;` path parameters are not accepted")]
    PathParameter,
    /// `..` above the root.
    #[error("`..` climbs above the root")]
    AboveRoot,
    /// A segment of only dots and spaces (or `+`, a space to form decoders) other than `.` and
    /// `..` (`...`, `. `, `..+`): Windows trims trailing dots and spaces, turning these into
    /// dot segments.
    #[error("a path segment of only dots and spaces")]
    DotsSegment,
    /// The decoded path is not UTF-8 (including overlong encodings such as `%C0%AE`).
    #[error("the path percent-decodes to bytes that are not UTF-8")]
    NotUtf8,
    /// A character that compatibility normalisation or best-fit mapping turns into path syntax.
    #[error("character U+{0:04X} in the path may be read as path syntax")]
    Confusable(u32),
    /// The path read as written (dot segments as names, the way a router that ran before the
    /// paywall matched it) falls under a priced route, and its resolved form does not: the
    /// handler chosen for the raw path must not run at the resolved path's price.
    #[error("the path as written is under a priced route its resolved form leaves: send the resolved path")]
    RoutedApart,
}

/// Characters that are not path syntax under NFKC but that Windows' "best fit" code-page
/// mapping (IIS, some CGI hosts) turns into `/`, `\` or `.`.
const BEST_FIT_SYNTAX: &[char] = &[
    '\u{2215}', // DIVISION SLASH
    '\u{2044}', // FRACTION SLASH
    '\u{29F8}', // BIG SOLIDUS
    '\u{29F9}', // BIG REVERSE SOLIDUS
    '\u{2216}', // SET MINUS
];

/// A path in canonical form: decoded segments (no dot or empty segments) and whether it ends
/// with `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Canonical {
    segments: Vec<String>,
    trailing_slash: bool,
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Characters written as themselves in the canonical path: unreserved, sub-delimiters other
/// than `;`, `:` and `@` (RFC 3986 `pchar`). Everything else is percent-encoded.
fn is_literal(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b'='
                | b':'
                | b'@'
        )
}

fn canonicalize(raw: &str) -> Result<Canonical, TargetError> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(TargetError::NotAbsolutePath);
    }
    // Decode every escape. Since `%2F` is refused and a raw `%` only ever starts an escape, the
    // decoded bytes are unambiguous: a `/` is a separator, a `%` is a literal percent sign.
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let pair = bytes
                .get(i + 1)
                .and_then(|&h| hex(h))
                .zip(bytes.get(i + 2).and_then(|&l| hex(l)));
            let Some((h, l)) = pair else {
                return Err(TargetError::InvalidEscape { at: i });
            };
            let b = h << 4 | l;
            if b == b'/' {
                return Err(TargetError::EncodedSlash);
            }
            decoded.push(b);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    for (at, &b) in decoded.iter().enumerate() {
        match b {
            b'\\' => return Err(TargetError::Backslash),
            b';' => return Err(TargetError::PathParameter),
            0x00..=0x1F | 0x7F => return Err(TargetError::ControlCharacter(b)),
            b'%' if decoded.get(at + 1).and_then(|&h| hex(h)).is_some()
                && decoded.get(at + 2).and_then(|&l| hex(l)).is_some() =>
            {
                return Err(TargetError::DoubleEncoding)
            }
            _ => {}
        }
    }
    let decoded = String::from_utf8(decoded).map_err(|_| TargetError::NotUtf8)?;
    for c in decoded.chars().filter(|c| !c.is_ascii()) {
        let syntax =
            |d: char| (d.is_ascii() && !d.is_ascii_alphanumeric()) || BEST_FIT_SYNTAX.contains(&d);
        if syntax(c) || std::iter::once(c).nfkc().any(syntax) {
            return Err(TargetError::Confusable(c as u32));
        }
    }

    let parts: Vec<&str> = decoded[1..].split('/').collect();
    let last = parts.len() - 1;
    let mut segments: Vec<String> = Vec::with_capacity(parts.len());
    let mut trailing_slash = false;
    for (i, part) in parts.iter().enumerate() {
        match *part {
            "" | "." => {}
            ".." => {
                if segments.pop().is_none() {
                    return Err(TargetError::AboveRoot);
                }
            }
            s if s.chars().all(|c| matches!(c, '.' | ' ' | '+')) => {
                return Err(TargetError::DotsSegment)
            }
            s => {
                segments.push(s.to_owned());
                continue;
            }
        }
        // A dot or empty segment at the end leaves the path ending in `/` (`/a/.` → `/a/`).
        trailing_slash = i == last;
    }
    Ok(Canonical {
        trailing_slash: trailing_slash && !segments.is_empty(),
        segments,
    })
}

impl Canonical {
    fn path(&self) -> String {
        let mut out = String::with_capacity(self.segments.iter().map(|s| s.len() + 1).sum());
        for segment in &self.segments {
            out.push('/');
            for &b in segment.as_bytes() {
                if is_literal(b) {
                    out.push(b as char);
                } else {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
        }
        if out.is_empty() || self.trailing_slash {
            out.push('/');
        }
        out
    }

    /// See [`match_key`].
    fn key(&self) -> String {
        let mut out = String::new();
        for segment in &self.segments {
            // An upstream that percent-decodes the whole target before splitting off the
            // query and fragment routes `/weather%3Fx` and `/weather%23x` as `/weather`: the
            // key ends where such an upstream's path would.
            if let Some(cut) = segment.find(['?', '#']) {
                if cut > 0 {
                    out.push('/');
                    out.push_str(&fold_segment(&segment[..cut]));
                }
                break;
            }
            out.push('/');
            out.push_str(&fold_segment(segment));
        }
        out
    }
}

/// One decoded segment as route matching compares it (see [`match_key`]).
fn fold_segment(segment: &str) -> String {
    let folded: String = if segment.is_ascii() {
        segment.to_ascii_lowercase()
    } else {
        segment
            .nfkc()
            .collect::<String>()
            .to_uppercase()
            .to_lowercase()
    };
    // Form decoders read `+` as a space; Windows serves `name::$DATA` as `name` and drops
    // trailing dots and spaces from a name (a segment of only those was refused, so this never
    // empties one).
    let folded = folded.replace('+', " ");
    let folded = folded.strip_suffix("::$data").unwrap_or(&folded);
    folded.trim_end_matches(['.', ' ']).to_owned()
}

/// The canonical form of `path` (the path of a request target, without the query), or why
/// it has none.
///
/// Canonical paths are fixed points: `canonical_path(canonical_path(p)?) == canonical_path(p)`.
///
/// ```
/// use tollgate_server::paywall::target::{canonical_path, TargetError};
/// assert_eq!(canonical_path("/x/../%77eather").unwrap(), "/weather");
/// assert_eq!(canonical_path("//v1/./a%2fb"), Err(TargetError::EncodedSlash));
/// ```
pub fn canonical_path(path: &str) -> Result<String, TargetError> {
    canonicalize(path).map(|c| c.path())
}

/// The key routes are matched on: the canonical path of `path`, percent-decoded, NFKC-folded,
/// case-folded, `+` read as a space, with `::$DATA` and trailing dots and spaces dropped from
/// each segment and no trailing slash, and ending before the first encoded `?` or `#`; `""`
/// for the root. Two paths an upstream may treat as one resource get one key.
pub fn match_key(path: &str) -> Result<String, TargetError> {
    canonicalize(path).map(|c| c.key())
}

/// The key of `path` read **as written**: segments folded like [`match_key`]'s, but dot
/// segments kept as names and empty segments kept (one trailing slash dropped). This is how a
/// router that matches raw paths — axum's, when the paywall is added with `Router::layer` and
/// so runs after routing — may have read the path: `/reports/q3/../..` is under `/reports`
/// for it, though it resolves to `/`. Errors as [`canonical_path`].
pub fn literal_key(path: &str) -> Result<String, TargetError> {
    // Validates the escapes, the bytes and the characters; what follows cannot fail.
    canonicalize(path)?;
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let pair = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1).and_then(|&h| hex(h)))
            .flatten()
            .zip(bytes.get(i + 2).and_then(|&l| hex(l)));
        match pair {
            Some((h, l)) => {
                decoded.push(h << 4 | l);
                i += 3;
            }
            None => {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
    }
    let decoded = String::from_utf8(decoded).map_err(|_| TargetError::NotUtf8)?;
    let mut parts: Vec<&str> = decoded[1..].split('/').collect();
    if parts.len() > 1 && parts.last() == Some(&"") {
        parts.pop();
    }
    let mut out = String::with_capacity(decoded.len());
    for part in parts {
        out.push('/');
        match part {
            "" | "." | ".." => out.push_str(part),
            s => out.push_str(&fold_segment(s)),
        }
    }
    if out == "/" {
        out.clear();
    }
    Ok(out)
}

/// The `400` (JSON body) for a request target without a canonical form.
pub fn refusal(error: &TargetError) -> Response {
    let body = serde_json::json!({
        "error": "invalid_request_target",
        "detail": error.to_string(),
    });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = StatusCode::BAD_REQUEST;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Rewrites the request's path to its canonical form (the query is kept byte for byte), so
/// that everything after the paywall — route matching, the challenge, the inner service —
/// sees the one form that was priced; or why the target has none (answer it with
/// [`refusal`]).
pub fn canonicalize_request(mut request: Request<Body>) -> Result<Request<Body>, TargetError> {
    let uri = request.uri();
    let canonical = canonical_path(uri.path()).inspect_err(|e| {
        tracing::debug!(error = %e, "request target refused");
    })?;
    if canonical == uri.path() {
        return Ok(request);
    }
    let target = match uri.query() {
        Some(q) => format!("{canonical}?{q}"),
        None => canonical,
    };
    let mut parts = uri.clone().into_parts();
    // Always parses: the canonical path holds only URI characters, the query was valid.
    let uri = PathAndQuery::try_from(target).ok().and_then(|pq| {
        parts.path_and_query = Some(pq);
        Uri::from_parts(parts).ok()
    });
    *request.uri_mut() = uri.ok_or(TargetError::NotAbsolutePath)?;
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        let cases: &[(&str, &str)] = &[
            ("/", "/"),
            ("/weather", "/weather"),
            ("/weather/", "/weather/"),
            ("/x/../weather", "/weather"),
            ("/x/%2e%2e/weather", "/weather"),
            ("/x/%2E%2E/weather", "/weather"),
            ("/x/.%2e/weather", "/weather"),
            ("/./weather", "/weather"),
            ("/%2e/weather", "/weather"),
            ("/a/b/../../weather", "/weather"),
            ("/weather/.", "/weather/"),
            ("/weather/x/..", "/weather/"),
            ("//weather", "/weather"),
            ("///weather//", "/weather/"),
            ("/v1//a///b", "/v1/a/b"),
            ("/%77eather", "/weather"),
            ("/%57EATHER", "/WEATHER"),
            ("/we%61ther", "/weather"),
            ("/%7euser", "/~user"),
            ("/a%2Db%5Fc%2Ed", "/a-b_c.d"),
            ("/a%21%24%26%27%28%29%2A%2B%2C%3D%3A%40", "/a!$&'()*+,=:@"),
            ("/a%3f", "/a%3F"),
            ("/a%23b", "/a%23b"),
            ("/a%20b", "/a%20b"),
            ("/100%25", "/100%25"),
            ("/a%25zz", "/a%25zz"),
            ("/a\"b{c}|^[]", "/a%22b%7Bc%7D%7C%5E%5B%5D"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/café", "/caf%C3%A9"),
        ];
        for (raw, want) in cases {
            let got = canonical_path(raw);
            assert_eq!(got.as_deref(), Ok(*want), "{raw}");
            // Canonical paths are fixed points.
            assert_eq!(canonical_path(want).as_deref(), Ok(*want), "{want}");
        }
    }

    #[test]
    fn ambiguous_forms_are_refused() {
        use TargetError::*;
        let cases: &[(&str, TargetError)] = &[
            ("", NotAbsolutePath),
            ("*", NotAbsolutePath),
            ("weather", NotAbsolutePath),
            ("%2Fweather", NotAbsolutePath),
            ("/x%2F..%2Fweather", EncodedSlash),
            ("/x%2f..%2fweather", EncodedSlash),
            ("/x\\..\\weather", Backslash),
            ("/x%5C..%5Cweather", Backslash),
            ("/x%5c..%5cweather", Backslash),
            ("/weather%00", ControlCharacter(0)),
            ("/weather%0a", ControlCharacter(0x0A)),
            ("/weather%0D%0AX-Injected:1", ControlCharacter(0x0D)),
            ("/weather%09", ControlCharacter(0x09)),
            ("/weather%7F", ControlCharacter(0x7F)),
            ("/weather%zz", InvalidEscape { at: 8 }),
            ("/weather%4", InvalidEscape { at: 8 }),
            ("/weather%", InvalidEscape { at: 8 }),
            ("/%u0077eather", InvalidEscape { at: 1 }),
            ("/x/%252e%252e/weather", DoubleEncoding),
            ("/x%252fweather", DoubleEncoding),
            ("/x%255cweather", DoubleEncoding),
            ("/x%2525", DoubleEncoding),
            ("/%2577eather", DoubleEncoding),
            ("/weather;jsessionid=1", PathParameter),
            ("/weather%3B", PathParameter),
            ("/weather%3bx", PathParameter),
            ("/..", AboveRoot),
            ("/../weather", AboveRoot),
            ("/%2e%2e/weather", AboveRoot),
            ("/a/../../weather", AboveRoot),
            ("/x/.../weather", DotsSegment),
            ("/x/..%20/weather", DotsSegment),
            ("/x/.%20/weather", DotsSegment),
            ("/x/%20/weather", DotsSegment),
            ("/x/..+/weather", DotsSegment),
            ("/x/%2B/weather", DotsSegment),
            ("/%ff", NotUtf8),
            ("/%c0%ae%c0%ae/weather", NotUtf8),
            ("/%e0%80%ae", NotUtf8),
            // Fullwidth solidus, full stop, reverse solidus, semicolon; two-dot leader;
            // small full stop; division slash; fullwidth percent sign.
            ("/x%EF%BC%8F..%EF%BC%8Fweather", Confusable(0xFF0F)),
            ("/x/%EF%BC%8E%EF%BC%8E/weather", Confusable(0xFF0E)),
            ("/x%EF%BC%BCweather", Confusable(0xFF3C)),
            ("/weather%EF%BC%9Bx", Confusable(0xFF1B)),
            ("/x/%E2%80%A5/weather", Confusable(0x2025)),
            ("/x/%EF%B9%92/weather", Confusable(0xFE52)),
            ("/x%E2%88%95weather", Confusable(0x2215)),
            ("/%EF%BC%85", Confusable(0xFF05)),
            ("/weather%C2%A0", Confusable(0xA0)),
        ];
        for (raw, want) in cases {
            assert_eq!(canonical_path(raw).as_ref(), Err(want), "{raw}");
        }
    }

    #[test]
    fn canonical_paths_are_fixed_points_with_the_same_key() {
        // Every path of up to three pieces from these: canonicalising twice changes nothing,
        // and the canonical path has the key of the original.
        let pieces = [
            "/",
            "//",
            "a",
            "B",
            ".",
            "..",
            "%2e",
            "%2E%2e",
            "%41",
            "%7e",
            "~",
            "%25",
            "%2541",
            "%20",
            "+",
            "%2B",
            "\u{e9}",
            "%C3%A9",
            "%c3",
            "%3F",
            ":",
            "@",
            "!",
            "%21",
            "*",
            "x.",
            "%EF%BD%97",
            ";",
            "%2F",
        ];
        let mut checked = 0;
        let mut path = String::new();
        let mut idx = [0usize; 3];
        for n in 1..=3 {
            let total = pieces.len().pow(n as u32);
            for mut k in 0..total {
                for slot in idx.iter_mut().take(n) {
                    *slot = k % pieces.len();
                    k /= pieces.len();
                }
                path.clear();
                path.push('/');
                for &i in &idx[..n] {
                    path.push_str(pieces[i]);
                }
                let Ok(canonical) = canonical_path(&path) else {
                    assert!(match_key(&path).is_err(), "{path}");
                    continue;
                };
                assert_eq!(
                    canonical_path(&canonical).as_ref(),
                    Ok(&canonical),
                    "{path}"
                );
                assert_eq!(match_key(&canonical), match_key(&path), "{path}");
                assert!(
                    canonical.parse::<http::Uri>().is_ok(),
                    "{path} → {canonical}"
                );
                checked += 1;
            }
        }
        assert!(checked > 5_000, "{checked}");
    }

    #[test]
    fn match_keys_fold_what_upstreams_fold() {
        let weather = match_key("/weather").unwrap();
        assert_eq!(weather, "/weather");
        for same in [
            "/WEATHER",
            "/Weather/",
            "/weather.",
            "/weather..",
            "/weather%20",
            "/weather+",
            "/weather.%2B",
            "/weather::$DATA",
            "/x/../WeAtHeR//",
            // Fullwidth letters fold to ASCII under NFKC.
            "/%EF%BD%97eather",
            // The mathematical bold small w.
            "/%F0%9D%90%B0eather",
            // Decoded before the query is split off.
            "/weather%3F",
            "/weather%3Fx=1/y",
            "/weather%23frag",
            "/weather/%3F",
        ] {
            assert_eq!(match_key(same).unwrap(), weather, "{same}");
        }
        assert_eq!(match_key("/").unwrap(), "");
        assert_eq!(match_key("//").unwrap(), "");
        // The Kelvin sign lower-cases to an ASCII k.
        assert_eq!(match_key("/%E2%84%AAiosk").unwrap(), "/kiosk");
        assert_eq!(match_key("/CAF%C3%89").unwrap(), "/caf\u{e9}");
        assert_ne!(match_key("/weathers").unwrap(), weather);
    }

    #[test]
    fn requests_are_rewritten_with_their_query_kept() {
        let request = Request::builder()
            .uri("/x/../%77eather/?q=%2e%2e/a&b=%2F")
            .body(Body::empty())
            .unwrap();
        let request = canonicalize_request(request).unwrap();
        assert_eq!(request.uri().path(), "/weather/");
        assert_eq!(request.uri().query(), Some("q=%2e%2e/a&b=%2F"));

        let request = Request::builder()
            .uri("http://example.com/x/../weather")
            .body(Body::empty())
            .unwrap();
        let request = canonicalize_request(request).unwrap();
        assert_eq!(request.uri().path(), "/weather");
        assert_eq!(request.uri().host(), Some("example.com"));

        let request = Request::builder()
            .uri("/a%2fb")
            .body(Body::empty())
            .unwrap();
        let refused = refusal(&canonicalize_request(request).unwrap_err());
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
        assert_eq!(refused.headers()["content-type"], "application/json");

        let request = Request::builder()
            .method("OPTIONS")
            .uri("*")
            .body(Body::empty())
            .unwrap();
        assert!(canonicalize_request(request).is_err());
    }
}
