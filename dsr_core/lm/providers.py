"""DSPy's ``provider/model`` names, resolved to OpenAI-compatible endpoints.

DSPy hands ``dspy.LM("anthropic/claude-sonnet-4-5")`` to LiteLLM, which routes it by the prefix. dsr talks to
every endpoint through the OpenAI SDK, so a prefix maps to the provider's OpenAI-compatible base URL and the
environment variable LiteLLM reads its key from; the model name sent is what follows the prefix. A prefix
for a provider without such an endpoint is an error naming what to do, raised when the LM is made rather
than as a 404 at the first call.

A name whose first part is not a known provider (``meta-llama/Llama-3.1-8B-Instruct`` on vLLM) is a model
name, sent as it is; without ``api_base`` it would go to OpenAI, which has no such model, so that is an
error too.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import LMConfigError


@dataclass(frozen=True)
class Provider:
    name: str
    api_base: str | None  # None: OpenAI's own (or OPENAI_BASE_URL), or for "hosted_vllm" the caller's
    api_key_env: str | None  # None: a local server, which takes any key


OPENAI = Provider("openai", None, "OPENAI_API_KEY")

PROVIDERS: dict[str, Provider] = {
    p.name: p
    for p in (
        OPENAI,
        Provider("anthropic", "https://api.anthropic.com/v1/", "ANTHROPIC_API_KEY"),
        Provider("gemini", "https://generativelanguage.googleapis.com/v1beta/openai/", "GEMINI_API_KEY"),
        Provider("groq", "https://api.groq.com/openai/v1", "GROQ_API_KEY"),
        Provider("together_ai", "https://api.together.xyz/v1", "TOGETHERAI_API_KEY"),
        Provider("deepseek", "https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"),
        Provider("mistral", "https://api.mistral.ai/v1", "MISTRAL_API_KEY"),
        Provider("fireworks_ai", "https://api.fireworks.ai/inference/v1", "FIREWORKS_AI_API_KEY"),
        Provider("openrouter", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
        Provider("xai", "https://api.x.ai/v1", "XAI_API_KEY"),
        Provider("cerebras", "https://api.cerebras.ai/v1", "CEREBRAS_API_KEY"),
        Provider("perplexity", "https://api.perplexity.ai", "PERPLEXITYAI_API_KEY"),
        Provider("ollama_chat", "http://localhost:11434/v1", None),
        Provider("ollama", "http://localhost:11434/v1", None),
        Provider("lm_studio", "http://localhost:1234/v1", None),
        Provider("hosted_vllm", None, None),
    )
}

# LiteLLM providers whose API is not OpenAI's: reachable through an OpenAI-compatible gateway only
UNSUPPORTED = frozenset({"azure", "azure_ai", "bedrock", "vertex_ai", "sagemaker", "huggingface", "watsonx"})


def resolve(model: str, api_base: str | None) -> tuple[Provider, str]:
    """The provider a DSPy model name names and the model name to send it."""
    prefix, slash, rest = model.partition("/")
    if slash and prefix in PROVIDERS and rest:
        provider = PROVIDERS[prefix]
        if provider.name == "hosted_vllm" and not api_base:
            raise LMConfigError(f"LM {model!r}: a hosted_vllm model needs api_base= (the server's /v1 URL)")
        return provider, rest
    if slash and prefix in UNSUPPORTED and not api_base:
        raise LMConfigError(
            f"LM {model!r}: {prefix} has no OpenAI-compatible API, and dsr talks to endpoints through the "
            "OpenAI SDK; serve the model behind an OpenAI-compatible gateway (a LiteLLM proxy, for one) and give "
            "its URL as api_base="
        )
    if slash and not api_base:
        known = ", ".join(sorted(PROVIDERS))
        raise LMConfigError(
            f"LM {model!r}: {prefix!r} is not a provider dsr knows ({known}); for a model served elsewhere "
            "(vLLM, a gateway) give api_base=, and the name is sent as it is"
        )
    return OPENAI, model
