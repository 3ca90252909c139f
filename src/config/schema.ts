// The schema of gateway.yaml. Defaults live here and nowhere else: the loader validates the
// document with ajv (`useDefaults`), so whatever a section or key leaves out is filled in from
// this file. Every object is closed (`additionalProperties: false`), so a misspelt key is an
// error at its line instead of a setting silently ignored.
import { Type } from "@sinclair/typebox";
import type { Static } from "@sinclair/typebox";

/** A list of gateway roles: at least one, none empty (an empty role would match nothing). */
function RoleList(fallback: string[], description: string) {
  return Type.Array(Type.String({ minLength: 1 }), { minItems: 1, default: fallback, description });
}

export const PolicySettingsSchema = Type.Object(
  {
    dir: Type.String({
      minLength: 1,
      default: "policies",
      description: "directory of the policy files; a relative path resolves against the config file's directory",
    }),
    watch: Type.Boolean({ default: true, description: "reload the policies when a file in dir changes" }),
    debounceMs: Type.Integer({
      minimum: 0,
      maximum: 10000,
      default: 200,
      description: "wait this long after the last change before reloading",
    }),
  },
  { additionalProperties: false, default: {} },
);

export const GatewaySettingsSchema = Type.Object(
  {
    adminRoles: RoleList(["admin"], "token roles that may use the admin API"),
    auditorRoles: RoleList(["auditor"], "token roles that may read the decision log and the review page"),
  },
  { additionalProperties: false, default: {} },
);

/** gateway.yaml as written: every section and key is optional. */
export const GatewayConfigSchema = Type.Object(
  {
    policy: Type.Optional(PolicySettingsSchema),
    gateway: Type.Optional(GatewaySettingsSchema),
  },
  { additionalProperties: false },
);

/** gateway.yaml as written (every key optional). */
export type GatewayConfigInput = Static<typeof GatewayConfigSchema>;

/** Every optional key made present (the schema gives each a default) and everything read-only. */
type Filled<T> = T extends ReadonlyArray<infer E>
  ? ReadonlyArray<Filled<E>>
  : T extends object
    ? { readonly [K in keyof T]-?: Filled<NonNullable<T[K]>> }
    : T;

/**
 * The configuration the gateway runs on: defaults applied, `policy.dir` an absolute path,
 * deep-frozen.
 */
export type GatewayConfig = Filled<GatewayConfigInput>;
