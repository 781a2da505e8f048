// Run a TypeScript file of this folder with Node 20: strip its types with the TypeScript
// compiler's transpiler (no type checking: `tsc --noEmit` does that, once, beforehand).
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import ts from "typescript";

const here = dirname(fileURLToPath(import.meta.url));
const source = process.argv[2];
const out = join(here, "build", basename(source).replace(/\.ts$/, ".mjs"));
const { outputText } = ts.transpileModule(readFileSync(join(here, source), "utf8"), {
  compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
  fileName: source,
});
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, outputText);
await import(pathToFileURL(out).href);
