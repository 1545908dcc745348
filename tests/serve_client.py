"""OpenAI's own Python client against `wgquant serve` (driven by tests/serve.rs).

Usage: serve_client.py BASE_URL API_KEY. Prints one JSON object with what it saw; exits non-zero
with a message when a check fails.
"""

import json
import sys
import threading

import openai

base, key = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base + "/v1", api_key=key)
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
out = {}


def check(cond, what):
    if not cond:
        print(json.dumps(out, indent=1))
        sys.exit(f"check failed: {what}")


# Models.
models = client.models.list()
out["models"] = [m.id for m in models.data]
check(len(out["models"]) == 1, "one model listed")

# A whole chat answer, greedy, with usage.
whole = client.chat.completions.create(model="any", messages=QUESTION, temperature=0, max_tokens=32)
out["chat"] = whole.choices[0].message.content
out["chat_finish"] = whole.choices[0].finish_reason
out["usage"] = whole.usage.model_dump()
check(whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens, "usage adds up")

# The same answer streamed: the chunks add up to it; the last reports usage.
stream = client.chat.completions.create(
    model="any", messages=QUESTION, temperature=0, max_tokens=32, stream=True,
    stream_options={"include_usage": True},
)
pieces, finish, usage = [], None, None
for chunk in stream:
    if chunk.usage is not None:
        usage = chunk.usage
    for choice in chunk.choices:
        if choice.delta.content:
            pieces.append(choice.delta.content)
        finish = choice.finish_reason or finish
out["chat_stream"] = "".join(pieces)
out["stream_chunks"] = len(pieces)
out["stream_finish"] = finish
check(usage is not None and usage.completion_tokens == whole.usage.completion_tokens, "streamed usage")

# Completions with log-probabilities, stopped by length.
comp = client.completions.create(model="any", prompt="Once upon a time", temperature=0, max_tokens=6, logprobs=2)
choice = comp.choices[0]
out["completion"] = choice.text
out["completion_finish"] = choice.finish_reason
out["completion_tokens"] = choice.logprobs.tokens
out["completion_logprobs"] = choice.logprobs.token_logprobs
check(len(choice.logprobs.tokens) == 6 and all(lp <= 0 for lp in choice.logprobs.token_logprobs), "logprobs")
check(all(len(top) == 2 for top in choice.logprobs.top_logprobs), "two alternatives per token")

# A stop string ends the answer before it.
stopped = client.completions.create(model="any", prompt="Once upon a time", temperature=0, max_tokens=32, stop=[" city"])
out["stopped"] = stopped.choices[0].text
out["stopped_finish"] = stopped.choices[0].finish_reason

# Several requests at once (more than the slots: some wait in the queue); each greedy answer is
# the one it gets alone.
prompts = ["Once upon a time", "The capital of France is", "In a hole in the ground", "My favourite colour is", "Water boils at"]
alone = [client.completions.create(model="any", prompt=p, temperature=0, max_tokens=12).choices[0].text for p in prompts]
together = [None] * len(prompts)


def run(i):
    s = client.completions.create(model="any", prompt=prompts[i], temperature=0, max_tokens=12, stream=True)
    together[i] = "".join(c.choices[0].text for c in s if c.choices)


threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
for t in threads:
    t.start()
for t in threads:
    t.join()
out["alone"] = alone
out["together"] = together

# Errors come back as the client's typed exceptions.
errors = {}
try:
    client.chat.completions.create(model="any", messages=QUESTION, n=2)
except openai.BadRequestError as e:
    errors["n"] = e.status_code
try:
    client.completions.create(model="any", prompt="word " * 5000, max_tokens=4)
except openai.BadRequestError as e:
    errors["context"] = e.code
try:
    openai.OpenAI(base_url=base + "/v1", api_key="wrong").models.list()
except openai.AuthenticationError as e:
    errors["key"] = e.status_code
out["errors"] = errors
print(json.dumps(out))
