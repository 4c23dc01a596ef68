//! The non-message parts of an OpenAI chat request → Gemini: `tools` →
//! `tools[].functionDeclarations` (the JSON Schema kept whole as `parametersJsonSchema`),
//! `tool_choice` → `toolConfig.functionCallingConfig` (`auto` → `AUTO`, `none` → `NONE`,
//! `required` → `ANY`, a named function → `ANY` + `allowedFunctionNames`), and sampling
//! parameters → `generationConfig` (`temperature`, `top_p` → `topP`, `top_k` → `topK`,
//! `max_tokens`/`max_completion_tokens` → `maxOutputTokens`, `stop` → `stopSequences`, `n` →
//! `candidateCount`, penalties, `seed`, `logprobs`, `response_format` →
//! `responseMimeType`/`responseJsonSchema`). Pure translation.

use serde_json::{Map, Value, json};

use super::request::{TranslateError, field};

pub(super) fn tools(body: &Map<String, Value>) -> Result<Option<Value>, TranslateError> {
    let Some(tools) = body.get("tools").filter(|t| !t.is_null()) else {
        return Ok(None);
    };
    let tools = tools
        .as_array()
        .ok_or_else(|| field("tools", "must be an array"))?;
    let mut declarations = Vec::with_capacity(tools.len());
    for (index, tool) in tools.iter().enumerate() {
        let kind = tool
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("function");
        if kind != "function" {
            return Err(TranslateError::Tool {
                index,
                kind: kind.to_owned(),
            });
        }
        let function = tool.get("function").unwrap_or(&Value::Null);
        let name = function
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| field(format!("tools[{index}].function.name"), "is required"))?;
        let mut declaration = json!({ "name": name });
        if let Some(description) = function.get("description").and_then(Value::as_str) {
            declaration["description"] = json!(description);
        }
        if let Some(parameters) = function.get("parameters").filter(|p| !p.is_null()) {
            declaration["parametersJsonSchema"] = parameters.clone();
        }
        declarations.push(declaration);
    }
    Ok((!declarations.is_empty()).then(|| json!([{ "functionDeclarations": declarations }])))
}

pub(super) fn tool_config(choice: &Value) -> Result<Value, TranslateError> {
    let config = match choice {
        Value::String(mode) => match mode.as_str() {
            "auto" => json!({ "mode": "AUTO" }),
            "none" => json!({ "mode": "NONE" }),
            "required" => json!({ "mode": "ANY" }),
            _ => {
                return Err(field(
                    "tool_choice",
                    "must be auto, none, required or a function",
                ));
            }
        },
        Value::Object(object) => {
            let name = object
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| field("tool_choice.function.name", "is required"))?;
            json!({ "mode": "ANY", "allowedFunctionNames": [name] })
        }
        _ => return Err(field("tool_choice", "must be a string or an object")),
    };
    Ok(json!({ "functionCallingConfig": config }))
}

pub(super) fn generation_config(
    body: &Map<String, Value>,
    cap: Option<u64>,
) -> Result<Map<String, Value>, TranslateError> {
    let mut config = Map::new();
    let number = |name: &str| -> Result<Option<Value>, TranslateError> {
        match body.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(value @ Value::Number(_)) => Ok(Some(value.clone())),
            Some(_) => Err(field(name, "must be a number")),
        }
    };
    for (from, to) in [
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("top_k", "topK"),
        ("n", "candidateCount"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
        ("seed", "seed"),
        ("top_logprobs", "logprobs"),
    ] {
        if let Some(value) = number(from)? {
            config.insert(to.into(), value);
        }
    }
    let asked = match number("max_completion_tokens")?.or(number("max_tokens")?) {
        Some(value) => Some(
            value
                .as_u64()
                .ok_or_else(|| field("max_tokens", "must be a positive integer"))?,
        ),
        None => None,
    };
    let max = match (asked, cap) {
        (Some(asked), Some(cap)) => Some(asked.min(cap)),
        (asked, cap) => asked.or(cap),
    };
    if let Some(max) = max {
        config.insert("maxOutputTokens".into(), json!(max));
    }
    match body.get("stop") {
        None | Some(Value::Null) => {}
        Some(Value::String(stop)) => {
            config.insert("stopSequences".into(), json!([stop]));
        }
        Some(Value::Array(stops)) if stops.is_empty() => {}
        Some(Value::Array(stops)) if stops.iter().all(Value::is_string) => {
            config.insert("stopSequences".into(), Value::Array(stops.clone()));
        }
        Some(_) => return Err(field("stop", "must be a string or an array of strings")),
    }
    if body.get("logprobs").and_then(Value::as_bool) == Some(true) {
        config.insert("responseLogprobs".into(), json!(true));
    }
    if let Some(format) = body.get("response_format").filter(|f| !f.is_null()) {
        match format.get("type").and_then(Value::as_str) {
            Some("text") => {}
            Some("json_object") => {
                config.insert("responseMimeType".into(), json!("application/json"));
            }
            Some("json_schema") => {
                config.insert("responseMimeType".into(), json!("application/json"));
                if let Some(schema) = format.get("json_schema").and_then(|s| s.get("schema")) {
                    config.insert("responseJsonSchema".into(), schema.clone());
                }
            }
            _ => {
                return Err(field(
                    "response_format.type",
                    "must be text, json_object or json_schema",
                ));
            }
        }
    }
    Ok(config)
}
