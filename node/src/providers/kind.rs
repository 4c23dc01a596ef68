//! The provider families Floodgate can call, with what differs between them on the wire:
//! default base URL, authentication header, and optional protocol features.

use std::fmt;

/// One provider family. Every OpenAI-compatible family shares the OpenAI client and differs
/// only in the facts below.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// api.openai.com.
    OpenAi,
    /// Azure OpenAI: deployment URLs, `api-version` query, `api-key` header.
    AzureOpenAi,
    /// Mistral La Plateforme.
    Mistral,
    /// GroqCloud.
    Groq,
    /// Together AI.
    Together,
    /// DeepSeek.
    DeepSeek,
    /// xAI (Grok).
    Xai,
    /// OpenRouter.
    OpenRouter,
    /// A local Ollama server (`/v1` OpenAI-compatible API).
    Ollama,
    /// A vLLM OpenAI-compatible server.
    Vllm,
    /// Any other server speaking OpenAI's API at a configured `api_base`.
    OpenAiCompatible,
    /// Anthropic Messages API.
    Anthropic,
    /// Google AI Gemini (`generativelanguage` API).
    Gemini,
    /// Amazon Bedrock (Converse / ConverseStream, SigV4 or API key).
    Bedrock,
    /// Cohere v2 (chat, embed).
    Cohere,
    /// Google Vertex AI (Gemini and Anthropic models, service-account auth).
    Vertex,
    /// The built-in deterministic provider: no network.
    Mock,
}

impl ProviderKind {
    /// Every accepted provider name, for error messages.
    pub const NAMES: &'static [&'static str] = &[
        "openai",
        "azure",
        "mistral",
        "groq",
        "together",
        "deepseek",
        "xai",
        "openrouter",
        "ollama",
        "vllm",
        "openai_compatible",
        "anthropic",
        "gemini",
        "bedrock",
        "cohere",
        "vertex",
        "mock",
    ];

    /// Parses a provider name as written in config (a few common aliases included).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "openai" => Self::OpenAi,
            "azure" | "azure_openai" | "azure-openai" => Self::AzureOpenAi,
            "mistral" => Self::Mistral,
            "groq" => Self::Groq,
            "together" | "togetherai" => Self::Together,
            "deepseek" => Self::DeepSeek,
            "xai" => Self::Xai,
            "openrouter" => Self::OpenRouter,
            "ollama" => Self::Ollama,
            "vllm" => Self::Vllm,
            "openai_compatible" | "openai-compatible" => Self::OpenAiCompatible,
            "anthropic" => Self::Anthropic,
            "gemini" | "google" => Self::Gemini,
            "bedrock" | "amazon-bedrock" | "aws_bedrock" => Self::Bedrock,
            "cohere" => Self::Cohere,
            "vertex" | "vertex_ai" | "vertexai" => Self::Vertex,
            "mock" => Self::Mock,
            _ => return None,
        })
    }

    /// The canonical name, as reported in responses (`provider`) and usage records.
    pub fn name(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::AzureOpenAi => "azure",
            Self::Mistral => "mistral",
            Self::Groq => "groq",
            Self::Together => "together",
            Self::DeepSeek => "deepseek",
            Self::Xai => "xai",
            Self::OpenRouter => "openrouter",
            Self::Ollama => "ollama",
            Self::Vllm => "vllm",
            Self::OpenAiCompatible => "openai_compatible",
            Self::Anthropic => "anthropic",
            Self::Gemini => "gemini",
            Self::Bedrock => "bedrock",
            Self::Cohere => "cohere",
            Self::Vertex => "vertex",
            Self::Mock => "mock",
        }
    }

    /// The base URL used when a target gives no `api_base`; `None` means one is required
    /// (or, for Bedrock and Vertex, derived from the target's region).
    ///
    /// OpenAI-family bases include the version (`…/v1`); Anthropic, Gemini and Cohere bases
    /// are the bare origin, the provider adds its versioned path.
    pub fn default_api_base(self) -> Option<&'static str> {
        match self {
            Self::OpenAi => Some("https://api.openai.com/v1"),
            Self::Mistral => Some("https://api.mistral.ai/v1"),
            Self::Groq => Some("https://api.groq.com/openai/v1"),
            Self::Together => Some("https://api.together.xyz/v1"),
            Self::DeepSeek => Some("https://api.deepseek.com/v1"),
            Self::Xai => Some("https://api.x.ai/v1"),
            Self::OpenRouter => Some("https://openrouter.ai/api/v1"),
            Self::Ollama => Some("http://localhost:11434/v1"),
            Self::Anthropic => Some("https://api.anthropic.com"),
            Self::Gemini => Some("https://generativelanguage.googleapis.com"),
            Self::Cohere => Some("https://api.cohere.com"),
            Self::Mock => Some("mock://local"),
            Self::AzureOpenAi
            | Self::Vllm
            | Self::OpenAiCompatible
            | Self::Bedrock
            | Self::Vertex => None,
        }
    }

    /// Whether this provider speaks OpenAI's wire format (served by the OpenAI client).
    pub fn is_openai_family(self) -> bool {
        matches!(
            self,
            Self::OpenAi
                | Self::AzureOpenAi
                | Self::Mistral
                | Self::Groq
                | Self::Together
                | Self::DeepSeek
                | Self::Xai
                | Self::OpenRouter
                | Self::Ollama
                | Self::Vllm
                | Self::OpenAiCompatible
        )
    }

    /// Whether the provider accepts `stream_options.include_usage`. Mistral rejects unknown
    /// fields but always sends usage in its last chunk, so the option is left off there;
    /// non-OpenAI providers report usage in their own stream events.
    pub fn accepts_stream_options(self) -> bool {
        self.is_openai_family() && self != Self::Mistral
    }

    /// Whether calling this provider works without an API key (local servers).
    pub fn key_optional(self) -> bool {
        matches!(
            self,
            Self::Ollama | Self::Vllm | Self::OpenAiCompatible | Self::Mock
        )
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
