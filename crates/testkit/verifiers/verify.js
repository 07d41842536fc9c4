// Runs a provider's Node verification snippet over cases read from stdin.
//
// Usage: node verify.js SCHEME, with SCHEME one of real-id, rheo, cometh,
// standard-webhooks. Each input line is a JSON object {"body": <base64 of the
// raw request body>, "headers": {name: value}, "key": <secret or public key
// PEM>}; each output line is {"ok": bool, "error": string|null}. A snippet
// that throws counts as a rejection, as it would in an Express handler.
"use strict";
const fs = require("fs");
const path = require("path");
const readline = require("readline");
const ts = require("typescript");

const here = __dirname;
const read = (name) => fs.readFileSync(path.join(here, "snippets", name), "utf8");
const transpile = (src) =>
  ts.transpileModule(src, { compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2020 } })
    .outputText;
const lower = (h) => Object.fromEntries(Object.entries(h).map(([k, v]) => [k.toLowerCase(), v]));

function loader(scheme) {
  switch (scheme) {
    case "real-id": {
      // Sloppy-mode script: the snippet assigns undeclared globals.
      const make = new Function("require", "process", "console", "secretKey", read("real_id.js") + "\nreturn verifyWebhookSignature;");
      return async (raw, headers, key) => {
        process.env.REAL_ID_SIGNING_KEY = key;
        const lines = [];
        const fn = make(require, process, { log: (m) => lines.push(m) }, key);
        // express.json(): the parsed body.
        fn(JSON.parse(raw.toString("utf8")), lower(headers));
        if (lines.length !== 1) throw new Error("snippet logged " + JSON.stringify(lines));
        return lines[0] === "Webhook signature is valid";
      };
    }
    case "rheo": {
      const fn = new Function("require", "exports", transpile(read("rheo.ts")) + "\nreturn verifyWebhookSignature;")(require, {});
      return async (raw, headers, key) => fn(raw.toString("utf8"), lower(headers)["x-rheo-signature"], key);
    }
    case "cometh": {
      return async (raw, headers, key) => {
        const marketplaceSdk = { webhook: { getWebhookPublicKey: async () => key } };
        const exports = {};
        new Function("require", "exports", "marketplaceSdk", transpile(read("cometh.ts")))(require, exports, marketplaceSdk);
        return exports.validateWebhookEvent(JSON.parse(raw.toString("utf8")), lower(headers)["x-cometh-indexer-signature"]);
      };
    }
    case "standard-webhooks": {
      const { Webhook } = require("standardwebhooks");
      return async (raw, headers, key) => {
        new Webhook(key).verify(raw, lower(headers));
        return true;
      };
    }
    default:
      throw new Error("unknown scheme " + scheme);
  }
}

async function main() {
  const check = loader(process.argv[2]);
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of rl) {
    if (!line) continue;
    const c = JSON.parse(line);
    let out;
    try {
      out = { ok: Boolean(await check(Buffer.from(c.body, "base64"), c.headers, c.key)), error: null };
    } catch (e) {
      out = { ok: false, error: String(e && e.message ? e.message : e) };
    }
    process.stdout.write(JSON.stringify(out) + "\n");
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(2);
});
