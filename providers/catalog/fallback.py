"""The providers doce offers before a catalog was ever fetched from OpenCode.

Taken from OpenCode 1.18.33's bundled catalog (names, env variables, auth methods) with a
few current models each; ``manage.py refresh_provider_catalog`` replaces it with the real
list (about 225 providers). ``opencode`` (OpenCode Zen) lists the models that 1.18.33
serves without a key, all free (``free_models``).
"""

from __future__ import annotations

from typing import Any

FALLBACK: list[dict[str, Any]] = [
    {
        "id": "openrouter",
        "name": "OpenRouter",
        "env": ["OPENROUTER_API_KEY"],
        "default_model": "anthropic/claude-sonnet-4.6",
        "auth_methods": [],
        "models": [
            ["anthropic/claude-sonnet-4.6", "Claude Sonnet 4.6"],
            ["anthropic/claude-opus-4.7", "Claude Opus 4.7"],
            ["openai/gpt-5.5", "GPT-5.5"],
            ["openai/gpt-5.4-mini", "GPT-5.4 mini"],
            ["google/gemini-3.5-flash", "Gemini 3.5 Flash"],
            ["google/gemini-2.5-pro", "Gemini 2.5 Pro"],
            ["deepseek/deepseek-v4-pro", "DeepSeek V4 Pro"],
            ["qwen/qwen3-coder", "Qwen3 Coder 480B A35B"],
            ["z-ai/glm-5.1", "GLM-5.1"],
        ],
    },
    {
        "id": "anthropic",
        "name": "Anthropic",
        "env": ["ANTHROPIC_API_KEY"],
        "default_model": "claude-sonnet-4-6",
        "auth_methods": [],
        "models": [
            ["claude-sonnet-4-6", "Claude Sonnet 4.6"],
            ["claude-opus-4-7", "Claude Opus 4.7"],
            ["claude-haiku-4-5", "Claude Haiku 4.5 (latest)"],
            ["claude-sonnet-4-5", "Claude Sonnet 4.5 (latest)"],
        ],
    },
    {
        "id": "openai",
        "name": "OpenAI",
        "env": ["OPENAI_API_KEY"],
        "default_model": "gpt-5.5",
        "auth_methods": [
            {"type": "oauth", "label": "ChatGPT Pro/Plus (browser)", "prompts": []},
            {"type": "oauth", "label": "ChatGPT Pro/Plus (headless)", "prompts": []},
            {"type": "api", "label": "Manually enter API Key", "prompts": []},
        ],
        "models": [
            ["gpt-5.5", "GPT-5.5"],
            ["gpt-5.4", "GPT-5.4"],
            ["gpt-5.4-mini", "GPT-5.4 mini"],
            ["gpt-5.3-codex", "GPT-5.3 Codex"],
            ["gpt-4.1", "GPT-4.1"],
        ],
    },
    {
        "id": "google",
        "name": "Google",
        "env": ["GOOGLE_API_KEY", "GOOGLE_GENERATIVE_AI_API_KEY", "GEMINI_API_KEY"],
        "default_model": "gemini-3.5-flash",
        "auth_methods": [],
        "models": [
            ["gemini-3.5-flash", "Gemini 3.5 Flash"],
            ["gemini-3.1-pro-preview", "Gemini 3.1 Pro Preview"],
            ["gemini-2.5-pro", "Gemini 2.5 Pro"],
            ["gemini-2.5-flash", "Gemini 2.5 Flash"],
        ],
    },
    {
        "id": "github-copilot",
        "name": "GitHub Copilot",
        "env": ["GITHUB_TOKEN"],
        "default_model": "claude-sonnet-4.6",
        "auth_methods": [
            {
                "type": "oauth",
                "label": "Login with GitHub Copilot",
                "prompts": [
                    {
                        "type": "select",
                        "key": "deploymentType",
                        "message": "Select GitHub deployment type",
                        "options": [
                            {"label": "GitHub.com", "value": "github.com", "hint": "Public"},
                            {
                                "label": "GitHub Enterprise",
                                "value": "enterprise",
                                "hint": "Data residency or self-hosted",
                            },
                        ],
                    },
                    {
                        "type": "text",
                        "key": "enterpriseUrl",
                        "message": "Enter your GitHub Enterprise URL or domain",
                        "placeholder": "company.ghe.com or https://company.ghe.com",
                        "when": {"key": "deploymentType", "op": "eq", "value": "enterprise"},
                    },
                ],
            }
        ],
        "models": [
            ["claude-sonnet-4.6", "Claude Sonnet 4.6"],
            ["gpt-5.5", "GPT-5.5"],
            ["gpt-5-mini", "GPT-5 Mini"],
            ["gemini-3.5-flash", "Gemini 3.5 Flash"],
        ],
    },
    {
        "id": "groq",
        "name": "Groq",
        "env": ["GROQ_API_KEY"],
        "default_model": "openai/gpt-oss-120b",
        "auth_methods": [],
        "models": [
            ["openai/gpt-oss-120b", "GPT OSS 120B"],
            ["openai/gpt-oss-20b", "GPT OSS 20B"],
            ["qwen/qwen3.6-27b", "Qwen3.6 27B"],
            ["llama-3.3-70b-versatile", "Llama 3.3 70B"],
        ],
    },
    {
        "id": "opencode",
        "name": "OpenCode Zen",
        "env": ["OPENCODE_API_KEY"],
        "default_model": "big-pickle",
        "auth_methods": [],
        "models": [
            ["longcat-2.5-preview-free", "LongCat 2.5 Preview Free"],
            ["space-bunny-free", "Space Bunny Free"],
            ["mimo-v2.6-flash-free", "MiMo-V2.6-Flash Free"],
            ["muse-spark-1.3-contributor-free", "Muse Spark 1.3 Free"],
            ["ling-3.0-flash-fin-free", "Ling 3.0 Flash Fin Free"],
            ["nemotron-3.5-lightning-free", "Nemotron 3.5 Lightning Free"],
            ["nemotron-3-ultra-free", "Nemotron 3 Ultra Free"],
            ["big-pickle", "Big Pickle"],
        ],
        "free_models": [
            "longcat-2.5-preview-free",
            "space-bunny-free",
            "mimo-v2.6-flash-free",
            "muse-spark-1.3-contributor-free",
            "ling-3.0-flash-fin-free",
            "nemotron-3.5-lightning-free",
            "nemotron-3-ultra-free",
            "big-pickle",
        ],
    },
]

FALLBACK_IDS = frozenset(entry["id"] for entry in FALLBACK)
