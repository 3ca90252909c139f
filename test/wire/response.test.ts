// Response PDUs: what the simulated PLC sends, and the check of a device's answer against
// the request (a broken answer is never passed to a client as good).
import t from "tap";
import { encodeRequest, parseRequest } from "../../src/wire/pdu.js";
import type { ModbusRequest, ReadDeviceIdentificationRequest, ReadHoldingRegistersRequest, WriteSingleCoilRequest } from "../../src/wire/pdu.js";
import { deviceIdentificationFor, encodeException, encodeResponse, parseResponse } from "../../src/wire/response.js";
import type { DeviceIdentification } from "../../src/wire/response.js";

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex");

function req(wire: string): ModbusRequest {
  const r = parseRequest(hex(wire));
  if (!r.ok) throw new Error(`test request ${wire}: ${r.reason}`);
  return r.request;
}

const FC1 = req("01 0013 0013");
const FC2 = req("02 0000 0003");
const FC3 = req("03 006b 0003");
const FC4 = req("04 0008 0001");
const FC5 = req("05 00ac ff00");
const FC6 = req("06 0001 0003");
const FC8 = req("08 0000 a537");
const FC8_2 = req("08 0002 0000");
const FC15 = req("0f 0013 000a 02 cd01");
const FC16 = req("10 0001 0002 04 000a 0102");
const FC22 = req("16 0004 00f2 0025");
const FC23 = req("17 0003 0006 000e 0003 06 00ff 00ff 00ff");
const FC43 = req("2b 0e 01 00") as ReadDeviceIdentificationRequest;
const FC43_4 = req("2b 0e 04 01") as ReadDeviceIdentificationRequest;
const FC17 = req("11");

const IDENT: DeviceIdentification = {
  readDeviceIdCode: 1,
  conformityLevel: 0x81,
  moreFollows: false,
  nextObjectId: 0,
  objects: [
    { id: 0, value: Buffer.from("ztgate") },
    { id: 1, value: Buffer.from("SIM-PLC") },
    { id: 2, value: Buffer.from("1.0") },
  ],
};

/** [name, request, data for encodeResponse (undefined for echoes), the response's wire bytes] */
const HAPPY: Array<[string, ModbusRequest, unknown, string]> = [
  ["FC1 19 coils (spec example)", FC1, [1, 0, 1, 1, 0, 0, 1, 1, 1, 1, 0, 1, 0, 1, 1, 0, 1, 0, 1], "01 03 cd 6b 05"],
  ["FC2 3 inputs", FC2, [0, 1, 1], "02 01 06"],
  ["FC3 3 registers (spec example)", FC3, [0x022b, 0, 0x64], "03 06 022b 0000 0064"],
  ["FC4 1 register", FC4, [0xffff], "04 02 ffff"],
  ["FC5 echo", FC5, undefined, "05 00ac ff00"],
  ["FC6 echo", FC6, undefined, "06 0001 0003"],
  ["FC8/0 echo of the query data", FC8, hex("a537"), "08 0000 a537"],
  ["FC8/2 diagnostic register", FC8_2, hex("0000"), "08 0002 0000"],
  ["FC15 address and quantity", FC15, undefined, "0f 0013 000a"],
  ["FC16 address and quantity", FC16, undefined, "10 0001 0002"],
  ["FC22 echo", FC22, undefined, "16 0004 00f2 0025"],
  ["FC23 6 registers read (spec example)", FC23, [0xfe, 0x0acd, 1, 3, 0x0d, 0xff], "17 0c 00fe 0acd 0001 0003 000d 00ff"],
  ["FC43/14 basic identification", FC43, IDENT, `2b 0e 01 81 00 00 03 00 06 ${Buffer.from("ztgate").toString("hex")} 01 07 ${Buffer.from("SIM-PLC").toString("hex")} 02 03 ${Buffer.from("1.0").toString("hex")}`],
  ["FC17 (not interpreted) passes as bytes", FC17, hex("04 01 ff"), "11 04 01 ff"],
];

function encode(r: ModbusRequest, data: unknown): Buffer {
  return (encodeResponse as (r: ModbusRequest, ...d: unknown[]) => Buffer)(r, ...(data === undefined ? [] : [data]));
}

t.test("every function code: data ↔ response bytes, both ways", async (t) => {
  for (const [name, r, data, wire] of HAPPY) {
    const pdu = encode(r, data);
    t.equal(pdu.toString("hex"), hex(wire).toString("hex"), `${name}: encode`);
    t.strictSame(parseResponse(r, pdu), { kind: "ok", data }, `${name}: parse`);
  }
});

t.test("FC43/14 takes string values and defaults the code to the request's", async (t) => {
  const pdu = encodeResponse(FC43, { conformityLevel: 1, moreFollows: true, nextObjectId: 2, objects: [{ id: 0, value: "ACME" }] });
  t.equal(pdu.toString("hex"), `2b0e0101ff02010004${Buffer.from("ACME").toString("hex")}`);
  const r = parseResponse(FC43, pdu);
  t.equal(r.kind === "ok" && r.data.moreFollows, true);
  t.equal(r.kind === "ok" && r.data.objects[0]?.value.toString(), "ACME");
});

t.test("booleans are bits too", async (t) => {
  t.equal(encodeResponse(FC2, [false, true, true]).toString("hex"), "020106");
});

t.test("exceptions: encoded as fc | 0x80, passed through as exceptions", async (t) => {
  t.equal(encodeException(3, 2).toString("hex"), "8302");
  t.equal(encodeException(0x83, 1).toString("hex"), "8301", "an fc that already has the high bit keeps it");
  for (const code of [1, 2, 3, 4, 5, 6, 8, 0x0a, 0x0b, 0x55]) t.strictSame(parseResponse(FC3, encodeException(3, code)), { kind: "exception", exception: code });
  t.strictSame(parseResponse(FC23, hex("97 04")), { kind: "exception", exception: 4 });
  t.throws(() => encodeException(3, 0), RangeError);
  t.throws(() => encodeException(3, 256), RangeError);
  t.throws(() => encodeException(256, 1), RangeError);
});

/** [name, request, device answer] — each must be malformed */
const BROKEN: Array<[string, ModbusRequest, string]> = [
  ["empty", FC3, ""],
  ["longer than 253 bytes", FC3, `03 ${"00".repeat(253)}`],
  ["another function code", FC3, "04 06 022b 0000 0064"],
  ["another function code's exception", FC3, "84 02"],
  ["exception without a code", FC3, "83"],
  ["exception with a trailing byte", FC3, "83 02 00"],
  ["exception code 0", FC3, "83 00"],
  ["FC3 no byte count", FC3, "03"],
  ["FC3 byte count for 2 registers, 3 asked", FC3, "03 04 022b 0000"],
  ["FC3 byte count for 4 registers, 3 asked", FC3, "03 08 022b 0000 0064 0000"],
  ["FC3 byte count right, a byte missing", FC3, "03 06 022b 0000 00"],
  ["FC3 byte count right, a byte extra", FC3, "03 06 022b 0000 0064 00"],
  ["FC4 odd byte count", FC4, "04 01 ff"],
  ["FC1 byte count 2 for 19 coils", FC1, "01 02 cd 6b"],
  ["FC1 byte count 4 for 19 coils", FC1, "01 04 cd 6b 05 00"],
  ["FC1 a data byte missing", FC1, "01 03 cd 6b"],
  ["FC2 no byte count", FC2, "02"],
  ["FC5 echo with another value", FC5, "05 00ac 0000"],
  ["FC5 echo of another address", FC5, "05 00ad ff00"],
  ["FC5 echo cut short", FC5, "05 00ac ff"],
  ["FC6 echo with another value", FC6, "06 0001 0004"],
  ["FC15 echo with another quantity", FC15, "0f 0013 0009"],
  ["FC15 echo with another address", FC15, "0f 0014 000a"],
  ["FC15 echo with data appended", FC15, "0f 0013 000a 00"],
  ["FC16 echo with another quantity", FC16, "10 0001 0003"],
  ["FC22 echo with another OR mask", FC22, "16 0004 00f2 0026"],
  ["FC23 byte count of the write part", FC23, "17 06 00fe 0acd 0001"],
  ["FC23 byte count right, length short", FC23, "17 0c 00fe 0acd 0001 0003 000d 00"],
  ["FC8 another sub-function", FC8, "08 0001 a537"],
  ["FC8 cut short", FC8, "08 00"],
  ["FC8/0 not an echo", FC8, "08 0000 a538"],
  ["FC43 another MEI type", FC43, "2b 0d 01 81 00 00 00"],
  ["FC43 header cut short", FC43, "2b 0e 01 81 00 00"],
  ["FC43 code 4 answering a stream request", FC43, "2b 0e 04 81 00 00 00"],
  ["FC43 code 1 answering an individual request", FC43_4, "2b 0e 01 81 00 00 01 01 01 41"],
  ["FC43 more-follows neither 00 nor FF", FC43, "2b 0e 01 81 01 00 00"],
  ["FC43 object count 1, no object", FC43, "2b 0e 01 81 00 00 01"],
  ["FC43 object count 1, object id only", FC43, "2b 0e 01 81 00 00 01 00"],
  ["FC43 object length past the end", FC43, "2b 0e 01 81 00 00 01 00 05 41 42"],
  ["FC43 bytes after the objects", FC43, "2b 0e 01 81 00 00 01 00 01 41 00"],
  ["FC43 object count 2, one object", FC43, "2b 0e 01 81 00 00 02 00 01 41"],
  ["FC43 individual access answered with another object", FC43_4, "2b 0e 04 81 00 00 01 02 01 41"],
  ["FC43 individual access answered with two objects", FC43_4, "2b 0e 04 81 00 00 02 01 01 41 02 01 41"],
];

t.test("a device answer that does not fit the request is malformed", async (t) => {
  for (const [name, r, wire] of BROKEN) {
    const got = parseResponse(r, hex(wire));
    t.equal(got.kind, "malformed", name);
    if (got.kind === "malformed") t.type(got.reason, "string");
  }
});

t.test("lenient where a client cannot be misled", async (t) => {
  // Padding bits of the last coil byte are not data; they are ignored, not passed as coils.
  t.strictSame(parseResponse(FC2, hex("02 01 fe")), { kind: "ok", data: [0, 1, 1] });
  // A device asked for more than its conformity level answers at its own (Modbus spec 6.21).
  const r = parseResponse(req("2b 0e 03 00") as ReadDeviceIdentificationRequest, hex("2b 0e 01 01 00 00 00"));
  t.equal(r.kind === "ok" && r.data.readDeviceIdCode, 1);
});

t.test("encodeResponse refuses data that does not fit the request", async (t) => {
  const bad: Array<[string, ModbusRequest, unknown]> = [
    ["FC1 without data", FC1, undefined],
    ["FC1 18 bits for 19 coils", FC1, new Array(18).fill(0)],
    ["FC2 a bit of 2", FC2, [0, 1, 2]],
    ["FC3 2 registers for 3", FC3, [1, 2]],
    ["FC3 a register of 65536", FC3, [1, 2, 65536]],
    ["FC3 a register of 1.5", FC3, [1, 2, 1.5]],
    ["FC23 the write quantity of registers", FC23, [1, 2, 3]],
    ["FC8 without data", FC8, undefined],
    ["FC43 object of 300 bytes", FC43, { ...IDENT, objects: [{ id: 0, value: Buffer.alloc(300) }] }],
    ["FC43 objects over 253 bytes in all", FC43, { ...IDENT, objects: [0, 1].map((id) => ({ id, value: Buffer.alloc(200) })) }],
    ["FC43 conformity level 256", FC43, { ...IDENT, conformityLevel: 256 }],
    ["FC17 response data over 252 bytes", FC17, Buffer.alloc(253)],
  ];
  for (const [name, r, data] of bad) t.throws(() => encode(r, data), RangeError, name);
});

t.test("deviceIdentificationFor: what a device answers, by access code", async (t) => {
  const catalog = new Map<number, string>([
    [0, "ztgate"],
    [1, "SIM-PLC"],
    [2, "1.0"],
    [3, "https://example.invalid"],
    [0x80, "boiler house"],
  ]);
  const ask = (code: number, objectId: number) => deviceIdentificationFor(req(`2b 0e 0${code} ${objectId.toString(16).padStart(2, "0")}`) as ReadDeviceIdentificationRequest, catalog, 0x83);
  const ids = (r: ReturnType<typeof ask>) => (r.ok ? r.data.objects.map((o) => o.id) : r.exception);
  t.strictSame(ids(ask(1, 0)), [0, 1, 2], "basic: 0..2");
  t.strictSame(ids(ask(2, 0)), [0, 1, 2, 3], "regular: up to 0x7F");
  t.strictSame(ids(ask(3, 0)), [0, 1, 2, 3, 0x80], "extended: all");
  t.strictSame(ids(ask(3, 3)), [3, 0x80], "from the object asked for");
  t.strictSame(ids(ask(1, 0x50)), [0, 1, 2], "an unknown object id restarts at the first");
  t.strictSame(ids(ask(4, 0x80)), [0x80], "individual access");
  t.strictSame(ids(ask(4, 0x50)), 2, "individual access to an unknown object → exception 02");
  const r = ask(1, 0);
  t.ok(r.ok && parseResponse(FC43, encodeResponse(FC43, r.data)).kind === "ok", "its answer encodes and checks");

  // Too many objects for one PDU: the first answer says more follow, the second goes on.
  const big = new Map<number, string>([0, 1, 2, 3, 4].map((id) => [id, "x".repeat(60)]));
  const first = deviceIdentificationFor(req("2b 0e 03 00") as ReadDeviceIdentificationRequest, big, 0x83);
  t.strictSame(first.ok && [first.data.objects.map((o) => o.id), first.data.moreFollows, first.data.nextObjectId], [[0, 1, 2], true, 3]);
  if (first.ok) t.ok(encodeResponse(FC43, first.data).length <= 253);
  const next = deviceIdentificationFor(req("2b 0e 03 03") as ReadDeviceIdentificationRequest, big, 0x83);
  t.strictSame(next.ok && [next.data.objects.map((o) => o.id), next.data.moreFollows], [[3, 4], false]);
});

t.test("the echo of a write is the request itself", async (t) => {
  for (const r of [FC5, FC6, FC22]) t.ok(encode(r, undefined).equals(encodeRequest(r)));
});

t.test("the types follow the request: data in, data out", async (t) => {
  const r3: ReadHoldingRegistersRequest = { kind: "read-holding-registers", fc: 3, address: 0, quantity: 2 };
  const back = parseResponse(r3, encodeResponse(r3, [1, 2]));
  const registers: readonly number[] | undefined = back.kind === "ok" ? back.data : undefined;
  t.strictSame(registers, [1, 2]);
  // @ts-expect-error a read needs its registers
  t.throws(() => encodeResponse(r3), RangeError);
  const r5: WriteSingleCoilRequest = { kind: "write-single-coil", fc: 5, address: 7, value: 1 };
  const echo = parseResponse(r5, encodeResponse(r5));
  t.strictSame(echo, { kind: "ok", data: undefined });
  // @ts-expect-error an echo takes no data
  t.equal(encodeResponse(r5, [1]).length, 5);
});
