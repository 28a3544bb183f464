// The gateway the tests talk to: RATCHET_SDK_* variables (set by the Ratchet test suite, which
// starts the stack), or else a stack started here with `python -m ratchet.sandbox.stack` from the
// repository (RATCHET_PYTHON, default ../../.venv/bin/python), stopped when the tests end.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");

export async function startStack() {
  const env = process.env;
  if (env.RATCHET_SDK_URL) {
    return {
      creds: {
        url: env.RATCHET_SDK_URL, api_key: env.RATCHET_SDK_API_KEY, project_id: env.RATCHET_SDK_PROJECT_ID,
        agent_id: env.RATCHET_SDK_AGENT_ID, agent_secret: env.RATCHET_SDK_AGENT_SECRET,
      },
      stop: async () => {},
    };
  }
  const venv = resolve(ROOT, ".venv/bin/python");
  const python = env.RATCHET_PYTHON ?? (existsSync(venv) ? venv : "python3");
  const child = spawn(python, ["-m", "ratchet.sandbox.stack"], { cwd: ROOT, stdio: ["pipe", "pipe", "inherit"] });
  const line = await new Promise((ok, fail) => {
    const rl = createInterface({ input: child.stdout });
    rl.once("line", ok);
    child.once("exit", (code) => fail(new Error(`the stack exited with ${code} before it was ready`)));
  });
  return {
    creds: JSON.parse(line),
    stop: () => new Promise((ok) => { child.once("exit", ok); child.stdin.end(); }),
  };
}
