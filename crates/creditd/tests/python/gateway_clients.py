"""Drives creditd's gateway with the official openai and anthropic clients.

Usage: gateway_clients.py SCENARIO

Reads CREDITD_BASE (the server, e.g. http://127.0.0.1:8080), CREDITD_KEY (a
customer key) and CREDITD_MODEL (the model to call, for the scenarios that
call one) from the environment, runs the scenario, and prints one JSON line
with what the client observed: the text, the usage the client parsed, or the
error it raised. The key is never printed. An unexpected failure exits with a
traceback and a non-zero status.
"""

import json
import os
import sys

import anthropic
import openai

PROMPT = "Say hello."

# Generous enough for a loaded machine, short enough that a hang fails the test.
TIMEOUT_SECS = 30.0


def openai_client(max_retries=openai.DEFAULT_MAX_RETRIES):
    return openai.OpenAI(
        base_url=os.environ["CREDITD_BASE"] + "/v1",
        api_key=os.environ["CREDITD_KEY"],
        max_retries=max_retries,
        timeout=TIMEOUT_SECS,
    )


def anthropic_client():
    return anthropic.Anthropic(
        base_url=os.environ["CREDITD_BASE"],
        api_key=os.environ["CREDITD_KEY"],
        timeout=TIMEOUT_SECS,
    )


def model():
    return os.environ["CREDITD_MODEL"]


def openai_usage(usage):
    if usage is None:
        return None
    details = usage.prompt_tokens_details
    return {
        "prompt_tokens": usage.prompt_tokens,
        "cached_tokens": details.cached_tokens if details else None,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def anthropic_usage(usage):
    return {
        "input_tokens": usage.input_tokens,
        "cache_read_input_tokens": usage.cache_read_input_tokens,
        "cache_creation_input_tokens": usage.cache_creation_input_tokens,
        "output_tokens": usage.output_tokens,
    }


def chat_request():
    return {
        "model": model(),
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 100,
    }


def chat_seen(reply):
    return {
        "text": reply.choices[0].message.content,
        "finish_reason": reply.choices[0].finish_reason,
        "usage": openai_usage(reply.usage),
    }


def chat():
    return chat_seen(openai_client().chat.completions.create(**chat_request()))


def chat_streamed(**options):
    stream = openai_client().chat.completions.create(
        **chat_request(), stream=True, **options
    )
    text = ""
    chunks = 0
    usage_chunks = 0
    empty_choice_chunks = 0
    usage = None
    last_has_choices = None
    finish_reason = None
    for chunk in stream:
        chunks += 1
        if chunk.usage is not None:
            usage_chunks += 1
            usage = openai_usage(chunk.usage)
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish_reason = chunk.choices[0].finish_reason or finish_reason
        else:
            empty_choice_chunks += 1
        last_has_choices = bool(chunk.choices)
    return {
        "text": text,
        "finish_reason": finish_reason,
        "chunks": chunks,
        "usage_chunks": usage_chunks,
        "empty_choice_chunks": empty_choice_chunks,
        "last_chunk_has_choices": last_has_choices,
        "usage": usage,
    }


def chat_stream():
    return chat_streamed()


def chat_stream_usage():
    return chat_streamed(stream_options={"include_usage": True})


def embeddings():
    # No encoding_format: the client asks for base64 and decodes it itself.
    reply = openai_client().embeddings.create(
        model=model(), input=["first text", "second text"]
    )
    return {
        "count": len(reply.data),
        "indexes": [item.index for item in reply.data],
        "embedding": list(reply.data[0].embedding),
        "usage": {
            "prompt_tokens": reply.usage.prompt_tokens,
            "total_tokens": reply.usage.total_tokens,
        },
    }


def models():
    return {"ids": sorted(item.id for item in openai_client().models.list())}


def messages():
    reply = anthropic_client().messages.create(
        model=model(),
        max_tokens=100,
        messages=[{"role": "user", "content": PROMPT}],
    )
    return {
        "text": "".join(block.text for block in reply.content if block.type == "text"),
        "stop_reason": reply.stop_reason,
        "usage": anthropic_usage(reply.usage),
    }


def messages_stream():
    with anthropic_client().messages.stream(
        model=model(),
        max_tokens=100,
        messages=[{"role": "user", "content": PROMPT}],
    ) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    return {
        "text": streamed,
        "final_text": "".join(
            block.text for block in final.content if block.type == "text"
        ),
        "stop_reason": final.stop_reason,
        "usage": anthropic_usage(final.usage),
    }


def openai_error(error):
    body = error.body if isinstance(error.body, dict) else {}
    return {
        "class": type(error).__name__,
        "status": error.status_code,
        "code": error.code,
        "type": error.type,
        "body_code": body.get("code"),
        "top_up_url": body.get("top_up_url"),
    }


def bad_key():
    try:
        openai_client().models.list()
    except openai.APIStatusError as error:
        return {"error": openai_error(error)}
    return {"error": None}


def insufficient():
    try:
        chat()
    except openai.APIStatusError as error:
        return {"error": openai_error(error)}
    return {"error": None}


def retry():
    # Two retries, as the client's default; its first backoff is under a second.
    client = openai_client(max_retries=2)
    raw = client.chat.completions.with_raw_response.create(**chat_request())
    seen = chat_seen(raw.parse())
    seen["retries_taken"] = raw.retries_taken
    return seen


SCENARIOS = {
    "chat": chat,
    "chat_stream": chat_stream,
    "chat_stream_usage": chat_stream_usage,
    "embeddings": embeddings,
    "models": models,
    "messages": messages,
    "messages_stream": messages_stream,
    "bad_key": bad_key,
    "insufficient": insufficient,
    "retry": retry,
}


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in SCENARIOS:
        sys.exit("usage: gateway_clients.py {" + ",".join(SCENARIOS) + "}")
    scenario = sys.argv[1]
    observed = SCENARIOS[scenario]()
    observed["scenario"] = scenario
    observed["versions"] = {
        "openai": openai.__version__,
        "anthropic": anthropic.__version__,
    }
    print(json.dumps(observed))


if __name__ == "__main__":
    main()
