// Entry of the bench's client thread: a worker does not inherit the tsx loader given on the
// command line (node --import tsx), so it registers tsx itself before loading the TypeScript.
import { register } from "tsx/esm/api";

register();
await import("./clients.ts");
