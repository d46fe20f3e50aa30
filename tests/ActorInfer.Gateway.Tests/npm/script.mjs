// Drives an ActorInfer node with the official openai client: node script.mjs BASEURL KEY
// Prints one JSON line per check; the .NET test reads them.
import OpenAI from "openai";

const [baseUrl, apiKey] = process.argv.slice(2);
if (!baseUrl || !apiKey) {
  console.error("usage: node script.mjs BASEURL KEY");
  process.exit(2);
}
const client = new OpenAI({ baseURL: `${baseUrl.replace(/\/$/, "")}/v1`, apiKey, maxRetries: 0 });

const models = await client.models.list();
const model = models.data[0].id;
console.log(JSON.stringify({ check: "models", model }));

const request = { model, prompt: "Hello, my dog is", max_tokens: 12, temperature: 0 };
const completion = await client.completions.create(request);
console.log(JSON.stringify({
  check: "completion",
  text: completion.choices[0].text,
  finish_reason: completion.choices[0].finish_reason,
  completion_tokens: completion.usage.completion_tokens,
}));

const stream = await client.completions.create({ ...request, stream: true });
let text = "";
let chunks = 0;
let finish = null;
for await (const chunk of stream) {
  chunks++;
  if (chunk.choices.length > 0) {
    text += chunk.choices[0].text;
    finish = chunk.choices[0].finish_reason ?? finish;
  }
}
console.log(JSON.stringify({ check: "stream", text, chunks, finish_reason: finish }));

try {
  await client.completions.create({ ...request, max_tokens: -1 });
  console.log(JSON.stringify({ check: "error", status: 0 }));
} catch (e) {
  console.log(JSON.stringify({ check: "error", status: e.status, param: e.param ?? e.error?.param ?? null }));
}
