// The shape of one policy file (SPEC §4). The schema checks shape; compile.ts checks meaning
// (point names, table/type fit, CIDRs, time windows…). Both report positioned errors.
import { Type } from "@sinclair/typebox";
import type { Static } from "@sinclair/typebox";
import { ACTIONS, TABLES } from "../pdp/operation.js";
import { OPCUA_TYPES, REGISTER_TYPES } from "../pdp/values.js";

const Name = Type.String({ minLength: 1 });
const ActionList = Type.Array(
  Type.Union([...ACTIONS, "*"].map((a) => Type.Literal(a)), { "x-expected": `an action: ${ACTIONS.join(", ")} or *` }),
  { minItems: 1, "x-expected": "a list of actions" },
);

export const PointSchema = Type.Object(
  {
    description: Type.Optional(Type.String()),
    units: Type.Optional(Type.String()),
    // Modbus points
    table: Type.Optional(Type.Union(TABLES.map((t) => Type.Literal(t)), { "x-expected": `one of ${TABLES.join(", ")}` })),
    address: Type.Optional(Type.Integer()),
    words: Type.Optional(Type.Union([Type.Literal("big"), Type.Literal("little")], { "x-expected": "big or little" })),
    // OPC UA points
    node: Type.Optional(Name),
    method: Type.Optional(Name),
    object: Type.Optional(Name),
    // both
    type: Type.Optional(
      Type.Union([...new Set<string>(["bool", ...REGISTER_TYPES, ...OPCUA_TYPES, "method"])].map((t) => Type.Literal(t)), {
        "x-expected": `a point type (bool, ${REGISTER_TYPES.join(", ")}; for OPC UA ${OPCUA_TYPES.join(", ")})`,
      }),
    ),
    min: Type.Optional(Type.Number()),
    max: Type.Optional(Type.Number()),
  },
  { additionalProperties: false },
);

const ClaimValue = Type.Union([Type.String(), Type.Number(), Type.Boolean()]);
export const SubjectsSchema = Type.Union(
  [
    Type.Literal("*"),
    Type.Object(
      {
        roles: Type.Optional(Type.Array(Name, { minItems: 1 })),
        subs: Type.Optional(Type.Array(Name, { minItems: 1 })),
        issuers: Type.Optional(Type.Array(Name, { minItems: 1 })),
        claims: Type.Optional(
          Type.Record(Type.String(), Type.Union([ClaimValue, Type.Array(ClaimValue, { minItems: 1 })], { "x-expected": "a value or a list of values" })),
        ),
      },
      { additionalProperties: false },
    ),
  ],
  { "x-expected": '"*" or { roles, subs, issuers, claims }' },
);

export const RawTargetSchema = Type.Object(
  {
    table: Type.Union(TABLES.map((t) => Type.Literal(t)), { "x-expected": `one of ${TABLES.join(", ")}` }),
    address: Type.Union([Type.Integer(), Type.String()], { "x-expected": 'an address (100) or a range ("100-199")' }),
  },
  { additionalProperties: false },
);

export const RuleSchema = Type.Object(
  {
    id: Type.String({ pattern: "^[A-Za-z0-9][A-Za-z0-9_.-]*$", "x-expected": "letters, digits, _ . - starting with a letter or digit (like mes-setpoint)" }),
    description: Type.Optional(Type.String()),
    allow: Type.Optional(ActionList),
    deny: Type.Optional(ActionList),
    subjects: SubjectsSchema,
    points: Type.Optional(Type.Array(Name, { minItems: 1 })),
    targets: Type.Optional(Type.Array(RawTargetSchema, { minItems: 1 })),
    nodes: Type.Optional(Type.Array(Name, { minItems: 1 })),
    values: Type.Optional(Type.Object({ min: Type.Optional(Type.Number()), max: Type.Optional(Type.Number()) }, { additionalProperties: false })),
    when: Type.Optional(
      Type.Object(
        {
          days: Type.Optional(Type.Union([Type.String(), Type.Array(Type.String(), { minItems: 1 })], { "x-expected": '"mon-fri", "mon,wed" or a list of days' })),
          hours: Type.Optional(Type.String()),
          tz: Type.Optional(Type.String()),
        },
        { additionalProperties: false },
      ),
    ),
    from: Type.Optional(Type.Array(Type.String(), { minItems: 1 })),
    rate: Type.Optional(Type.String()),
    approval: Type.Optional(
      Type.Object(
        {
          roles: Type.Array(Name, { minItems: 1, "x-expected": "a non-empty list of roles that may approve (like [shift-lead])" }),
          timeout: Type.String({ "x-expected": 'a duration from 1s to 1h (like "60s", "5m")' }),
        },
        { additionalProperties: false, "x-expected": "{ roles: [..], timeout: 60s }" },
      ),
    ),
  },
  { additionalProperties: false },
);

export const PolicyFileSchema = Type.Object(
  {
    asset: Type.String({ pattern: "^[a-z0-9][a-z0-9-]*$", "x-expected": "lowercase letters, digits and - starting with a letter or digit (like boiler-plc)" }),
    description: Type.Optional(Type.String()),
    zone: Type.Optional(Type.String({ minLength: 1 })),
    protocol: Type.Union([Type.Literal("modbus"), Type.Literal("opcua")], { "x-expected": "modbus or opcua" }),
    endpoint: Type.String({ minLength: 1 }),
    unit: Type.Optional(Type.Integer({ minimum: 1, maximum: 247 })),
    front: Type.Optional(Type.Object({ unit: Type.Integer({ minimum: 1, maximum: 247 }), listener: Type.Optional(Type.String({ minLength: 1 })) }, { additionalProperties: false })),
    mode: Type.Optional(Type.Union([Type.Literal("enforce"), Type.Literal("monitor")], { "x-expected": "enforce or monitor" })),
    points: Type.Optional(Type.Record(Type.String(), PointSchema)),
    rules: Type.Array(RuleSchema),
  },
  { additionalProperties: false },
);

export type PointFile = Static<typeof PointSchema>;
export type RuleFile = Static<typeof RuleSchema>;
export type PolicyFile = Static<typeof PolicyFileSchema>;
