// Ready-to-paste configuration for a new client key.

export interface Snippet {
  id: string;
  label: string;
  language: string;
  code: string;
}

export function snippets(origin: string, key: string): Snippet[] {
  const base = origin.replace(/\/+$/, "");
  return [
    {
      id: "claude-code",
      label: "Claude Code",
      language: "sh",
      code: `export ANTHROPIC_BASE_URL=${base}\nexport ANTHROPIC_API_KEY=${key}\nclaude`,
    },
    {
      id: "openai",
      label: "OpenAI SDK",
      language: "python",
      code:
        `from openai import OpenAI\n\n` +
        `client = OpenAI(\n    base_url="${base}/v1",\n    api_key="${key}",\n)\n` +
        `reply = client.chat.completions.create(\n` +
        `    model="claude-sonnet-4-5",\n` +
        `    messages=[{"role": "user", "content": "Hello"}],\n` +
        `)\nprint(reply.choices[0].message.content)`,
    },
    {
      id: "curl",
      label: "curl",
      language: "sh",
      code:
        `curl ${base}/v1/messages \\\n` +
        `  -H "x-api-key: ${key}" -H "anthropic-version: 2023-06-01" \\\n` +
        `  -H "content-type: application/json" \\\n` +
        `  -d '{"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "Hello"}]}'`,
    },
  ];
}
