//! Media references in OpenAI content parts → Gemini parts: a base64 `data:` URL becomes
//! `inlineData`, an `http(s)://` or `gs://` URI becomes `fileData` with a MIME type guessed
//! from the path's extension (`image/*` when there is none to go by). Pure functions.

use serde_json::{Value, json};

use super::request::TranslateError;

/// The Gemini part for a media reference found in message `index`; `filename` (of a `file`
/// part) helps guess the type of raw base64 data.
pub(crate) fn media_part(
    index: usize,
    url: &str,
    filename: Option<&str>,
) -> Result<Value, TranslateError> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest.split_once(',').ok_or_else(|| bad(index, url))?;
        let mime = meta
            .strip_suffix(";base64")
            .ok_or_else(|| bad(index, url))?;
        let mime = if mime.is_empty() {
            "application/octet-stream"
        } else {
            mime
        };
        return Ok(json!({ "inlineData": { "mimeType": mime, "data": data } }));
    }
    let lower = url.to_ascii_lowercase();
    if ["https://", "http://", "gs://"]
        .iter()
        .any(|scheme| lower.starts_with(scheme))
    {
        let mime = guess_mime(url).unwrap_or("image/*");
        return Ok(json!({ "fileData": { "mimeType": mime, "fileUri": url } }));
    }
    if let Some(name) = filename {
        // A `file` part may carry bare base64 with its name beside it.
        let mime = guess_mime(name).unwrap_or("application/pdf");
        return Ok(json!({ "inlineData": { "mimeType": mime, "data": url } }));
    }
    Err(bad(index, url))
}

fn bad(index: usize, url: &str) -> TranslateError {
    let shown: String = url.chars().take(40).collect();
    TranslateError::MediaUrl { index, url: shown }
}

/// The MIME type of a path or URL by its extension.
pub(crate) fn guess_mime(path: &str) -> Option<&'static str> {
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let last = path.rsplit('/').next().unwrap_or(path);
    let (_, extension) = last.rsplit_once('.')?;
    Some(match extension.to_ascii_lowercase().as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "mp3" => "audio/mp3",
        "wav" => "audio/wav",
        "flac" => "audio/flac",
        "ogg" => "audio/ogg",
        "mp4" => "video/mp4",
        "mov" => "video/quicktime",
        "webm" => "video/webm",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_urls_become_inline_data() {
        let part = media_part(0, "data:image/png;base64,iVBORw0KGgo=", None).expect("valid");
        assert_eq!(
            part,
            json!({"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}})
        );
        assert!(media_part(0, "data:image/png,notbase64", None).is_err());
    }

    #[test]
    fn uris_become_file_data_with_a_guessed_type() {
        let part = media_part(1, "https://example.com/cat.JPG?x=1", None).expect("valid");
        assert_eq!(
            part,
            json!({"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/cat.JPG?x=1"}})
        );
        let part = media_part(1, "https://example.com/picture", None).expect("valid");
        assert_eq!(part["fileData"]["mimeType"], "image/*");
        assert!(media_part(1, "ftp://example.com/a.png", None).is_err());
    }
}
