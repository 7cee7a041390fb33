"""Response bodies as OpenCode 1.18.33 sends them (recorded from the real server; see
docs/opencode.md), for the client's unit tests."""

SESSION_ID = "ses_de02e424fffeu9POMC7p83UFDU"

HEALTH = {"healthy": True, "version": "1.18.33"}

SESSION = {
    "id": SESSION_ID,
    "slug": "quiet-engine",
    "projectID": "global",
    "directory": "/srv/doce/projects/7/workspace",
    "path": "srv/doce/projects/7/workspace",
    "cost": 0,
    "tokens": {"input": 0, "output": 0, "reasoning": 0, "cache": {"read": 0, "write": 0}},
    "title": "t",
    "version": "1.18.33",
    "time": {"created": 1795830169009, "updated": 1795830169009},
}

_INFO = {
    "parentID": "msg_21fd1be7d001G2KI1VQG18I15r",
    "role": "assistant",
    "mode": "build",
    "agent": "build",
    "path": {"cwd": "/srv/doce/projects/7/workspace", "root": "/"},
    "cost": 0,
    "tokens": {
        "total": 15,
        "input": 10,
        "output": 5,
        "reasoning": 0,
        "cache": {"write": 0, "read": 0},
    },
    "modelID": "stub-model",
    "providerID": "stub",
    "time": {"created": 1795830172709, "completed": 1795830175786},
    "id": "msg_21fd1cc2500124KKC0EA386VHq",
    "sessionID": SESSION_ID,
}

PROMPT_REPLY = {
    "info": {**_INFO, "finish": "stop"},
    "parts": [
        {
            "type": "step-start",
            "id": "prt_21fd1d7a1001HE1SeTaBesfdqO",
            "sessionID": SESSION_ID,
            "messageID": _INFO["id"],
        },
        {
            "type": "text",
            "text": "hi there",
            "time": {"start": 1795830175674, "end": 1795830175700},
            "id": "prt_21fd1d7ba001l1TiUE6ab5BoVF",
            "sessionID": SESSION_ID,
            "messageID": _INFO["id"],
        },
        {
            "reason": "stop",
            "type": "step-finish",
            "cost": 0,
            "id": "prt_21fd1d7f60015kiIizUv7WYjEb",
            "sessionID": SESSION_ID,
            "messageID": _INFO["id"],
        },
    ],
}

PROVIDER_AUTH_ERROR_REPLY = {
    "info": {
        **_INFO,
        "providerID": "anthropic",
        "tokens": {"input": 0, "output": 0, "reasoning": 0, "cache": {"read": 0, "write": 0}},
        "error": {
            "name": "ProviderAuthError",
            "data": {"providerID": "anthropic", "message": "No API key found for anthropic"},
        },
    },
    "parts": [],
}

REJECTED_KEY_REPLY = {
    "info": {
        **_INFO,
        "error": {
            "name": "APIError",
            "data": {
                "message": "Incorrect API key provided.",
                "statusCode": 401,
                "isRetryable": False,
                "responseHeaders": {"content-type": "application/json"},
                "responseBody": '{"error": {"message": "Incorrect API key provided: sk-liv***", '
                '"code": "invalid_api_key"}}',
                "metadata": {"url": "http://127.0.0.1:41275/v1/chat/completions"},
            },
        },
    },
    "parts": [],
}

RATE_LIMITED_REPLY = {
    "info": {
        **_INFO,
        "error": {
            "name": "APIError",
            "data": {"message": "Rate limit reached", "statusCode": 429, "isRetryable": True},
        },
    },
    "parts": [],
}

BAD_REQUEST = {
    "name": "BadRequest",
    "data": {"message": 'Missing key\n  at ["key"]', "kind": "Payload"},
}
NOT_FOUND = {"name": "NotFoundError", "data": {"message": f"Session not found: {SESSION_ID}"}}
UNKNOWN_ERROR = {
    "name": "UnknownError",
    "data": {
        "message": "Unexpected server error. Check server logs for details.",
        "ref": "err_1ed51acc",
    },
}
OAUTH_MISSING = {"name": "ProviderAuthOauthMissing", "data": {"providerID": "openai"}}
INVALID_REQUEST = {"_tag": "InvalidRequestError", "message": "Invalid query", "kind": "Query"}

PROVIDER_AUTH_METHODS = {
    "openai": [
        {"type": "oauth", "label": "ChatGPT Pro/Plus (browser)"},
        {"type": "oauth", "label": "ChatGPT Pro/Plus (headless)"},
        {"type": "api", "label": "Manually enter API Key"},
    ],
    "github-copilot": [
        {
            "type": "oauth",
            "label": "Login with GitHub Copilot",
            "prompts": [
                {
                    "type": "select",
                    "key": "deploymentType",
                    "message": "Select GitHub deployment type",
                    "options": [{"label": "GitHub.com", "value": "github.com", "hint": "Public"}],
                },
            ],
        }
    ],
}

AUTHORIZATION = {
    "url": "https://github.com/login/device",
    "method": "auto",
    "instructions": "Enter code: ABCD-1234",
}

EVENT_LINES = [
    'data: {"id":"evt_21fd22824001SP6xdo27OKbOeW","type":"server.connected","properties":{}}',
    "",
    'data: {"id":"evt_21fd2384e001kixGNesG2oApTN","type":"session.status","properties":'
    f'{{"sessionID":"{SESSION_ID}","status":{{"type":"busy"}}}}}}',
    "",
    'data: {"id":"evt_21fd24833001W556F0RRNnFpD2","type":"server.instance.disposed",'
    '"properties":{"directory":"/srv/doce/projects/7/workspace"}}',
    "",
]
