// Request PDUs (SPEC §5.1): each function code's wire bytes (the Modbus spec's own examples
// where it has one), round trips, and every limit at its edge.
import t from "tap";
import { encodeRequest, ExceptionCode, LIMITS, parseRequest } from "../../src/wire/pdu.js";
import type { ModbusRequest } from "../../src/wire/pdu.js";

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex");
const u16 = (n: number) => n.toString(16).padStart(4, "0");
const u8 = (n: number) => n.toString(16).padStart(2, "0");

/** [name, wire bytes, the request they are] */
const HAPPY: Array<[string, string, ModbusRequest]> = [
  ["FC1 read coils 20-38", "01 0013 0013", { kind: "read-coils", fc: 1, address: 19, quantity: 19 }],
  ["FC2 read discrete inputs 197-218", "02 00c4 0016", { kind: "read-discrete-inputs", fc: 2, address: 196, quantity: 22 }],
  ["FC3 read holding 108-110", "03 006b 0003", { kind: "read-holding-registers", fc: 3, address: 107, quantity: 3 }],
  ["FC4 read input 9", "04 0008 0001", { kind: "read-input-registers", fc: 4, address: 8, quantity: 1 }],
  ["FC5 write coil 173 ON", "05 00ac ff00", { kind: "write-single-coil", fc: 5, address: 172, value: 1 }],
  ["FC5 write coil 0 OFF", "05 0000 0000", { kind: "write-single-coil", fc: 5, address: 0, value: 0 }],
  ["FC6 write register 2 = 3", "06 0001 0003", { kind: "write-single-register", fc: 6, address: 1, value: 3 }],
  ["FC8 return query data", "08 0000 a537", { kind: "diagnostics", fc: 8, subFunction: 0, data: hex("a537") }],
  ["FC8 with no data", "08 000a", { kind: "diagnostics", fc: 8, subFunction: 10, data: Buffer.alloc(0) }],
  ["FC15 write 10 coils from 20", "0f 0013 000a 02 cd01", { kind: "write-multiple-coils", fc: 15, address: 19, quantity: 10, values: [1, 0, 1, 1, 0, 0, 1, 1, 1, 0] }],
  ["FC15 write 8 coils (no padding)", "0f 0000 0008 01 81", { kind: "write-multiple-coils", fc: 15, address: 0, quantity: 8, values: [1, 0, 0, 0, 0, 0, 0, 1] }],
  ["FC16 write 2 registers from 2", "10 0001 0002 04 000a 0102", { kind: "write-multiple-registers", fc: 16, address: 1, quantity: 2, values: [10, 258] }],
  ["FC22 mask write register 5", "16 0004 00f2 0025", { kind: "mask-write-register", fc: 22, address: 4, andMask: 0xf2, orMask: 0x25 }],
  [
    "FC23 read 4-9, write 15-17",
    "17 0003 0006 000e 0003 06 00ff 00ff 00ff",
    { kind: "read-write-multiple-registers", fc: 23, read: { address: 3, quantity: 6 }, write: { address: 14, quantity: 3, values: [255, 255, 255] } },
  ],
  ["FC43/14 basic device id", "2b 0e 01 00", { kind: "read-device-identification", fc: 43, meiType: 14, readDeviceIdCode: 1, objectId: 0 }],
  ["FC43/14 one object", "2b 0e 04 81", { kind: "read-device-identification", fc: 43, meiType: 14, readDeviceIdCode: 4, objectId: 0x81 }],
  ["FC43/13 CANopen (not interpreted)", "2b 0d 0001", { kind: "unsupported", fc: 43, data: hex("0d 0001") }],
  ["FC7 read exception status (not interpreted)", "07", { kind: "unsupported", fc: 7, data: Buffer.alloc(0) }],
  ["FC17 report server id (not interpreted)", "11", { kind: "unsupported", fc: 17, data: Buffer.alloc(0) }],
  ["FC20 read file record (not interpreted)", "14 07 06 0004 0001 0002", { kind: "unsupported", fc: 20, data: hex("07 06 0004 0001 0002") }],
  ["FC127 (not interpreted)", "7f 01", { kind: "unsupported", fc: 127, data: hex("01") }],
];

t.test("every function code: wire bytes ↔ request, both ways", async (t) => {
  for (const [name, wire, req] of HAPPY) {
    const parsed = parseRequest(hex(wire));
    t.strictSame(parsed, { ok: true, request: req }, `${name}: parse`);
    t.equal(encodeRequest(req).toString("hex"), hex(wire).toString("hex"), `${name}: encode`);
  }
});

t.test("parsed data is a copy, not a view of the receive buffer", async (t) => {
  const buf = hex("08 0000 a537");
  const r = parseRequest(buf);
  buf.fill(0);
  t.strictSame(r.ok && r.request.kind === "diagnostics" && [...r.request.data], [0xa5, 0x37]);
});

/** [name, PDU, expected: "ok" or the exception code] */
const fc15 = (qty: number, bc = Math.ceil(qty / 8), body = bc) => `0f 0000 ${u16(qty)} ${u8(bc)} ${"00".repeat(body)}`;
const fc16 = (qty: number, bc = 2 * qty, body = bc) => `10 0000 ${u16(qty)} ${u8(bc & 0xff)} ${"00".repeat(body)}`;
const fc23 = (rq: number, wq: number, bc = 2 * wq, body = bc, ra = 0, wa = 0) => `17 ${u16(ra)} ${u16(rq)} ${u16(wa)} ${u16(wq)} ${u8(bc & 0xff)} ${"00".repeat(body)}`;
const read = (fc: number, address: number, qty: number) => `${u8(fc)} ${u16(address)} ${u16(qty)}`;

const LIMIT_CASES: Array<[string, string, "ok" | 1 | 3]> = [
  // FC1/2: 1..2000
  ...[1, 2].flatMap((fc): Array<[string, string, "ok" | 3]> => [
    [`FC${fc} quantity 2000`, read(fc, 0, 2000), "ok"],
    [`FC${fc} quantity 2001`, read(fc, 0, 2001), 3],
    [`FC${fc} quantity 1`, read(fc, 0, 1), "ok"],
    [`FC${fc} quantity 0`, read(fc, 0, 0), 3],
    [`FC${fc} 2000 from 63536 ends at 65535`, read(fc, 63536, 2000), "ok"],
    [`FC${fc} 2000 from 63537 runs past 65535`, read(fc, 63537, 2000), 3],
  ]),
  // FC3/4: 1..125
  ...[3, 4].flatMap((fc): Array<[string, string, "ok" | 3]> => [
    [`FC${fc} quantity 125`, read(fc, 0, 125), "ok"],
    [`FC${fc} quantity 126`, read(fc, 0, 126), 3],
    [`FC${fc} quantity 0`, read(fc, 0, 0), 3],
    [`FC${fc} quantity 0xFFFF`, read(fc, 0, 0xffff), 3],
    [`FC${fc} 1 at 65535`, read(fc, 65535, 1), "ok"],
    [`FC${fc} 2 at 65535`, read(fc, 65535, 2), 3],
    [`FC${fc} one byte short`, read(fc, 0, 1).slice(0, -2), 3],
    [`FC${fc} one byte too many`, `${read(fc, 0, 1)} 00`, 3],
  ]),
  ["FC1 only a function code", "01", 3],
  // FC5: 0xFF00 or 0x0000
  ["FC5 0xFF00", "05 0000 ff00", "ok"],
  ["FC5 0x0000", "05 ffff 0000", "ok"],
  ["FC5 0x1234", "05 0000 1234", 3],
  ["FC5 0x00FF", "05 0000 00ff", 3],
  ["FC5 0xFFFF", "05 0000 ffff", 3],
  ["FC5 0x0001", "05 0000 0001", 3],
  ["FC5 too short", "05 0000 ff", 3],
  ["FC5 too long", "05 0000 ff00 00", 3],
  // FC6
  ["FC6 any value", "06 ffff ffff", "ok"],
  ["FC6 too short", "06 0000 00", 3],
  ["FC6 too long", "06 0000 0000 00", 3],
  // FC8
  ["FC8 sub-function only", "08 0000", "ok"],
  ["FC8 half a sub-function", "08 00", 3],
  // FC15: 1..1968, byte count ceil(n/8), length consistent, padding zero
  ["FC15 quantity 1968 (byte count 246)", fc15(1968), "ok"],
  ["FC15 quantity 1969", fc15(1969), 3],
  ["FC15 quantity 1", fc15(1), "ok"],
  ["FC15 quantity 0", fc15(0, 0), 3],
  ["FC15 quantity 9, byte count 2", fc15(9), "ok"],
  ["FC15 quantity 9, byte count 1", fc15(9, 1), 3],
  ["FC15 quantity 8, byte count 2", fc15(8, 2), 3],
  ["FC15 byte count 2 but 1 data byte", fc15(9, 2, 1), 3],
  ["FC15 byte count 2 but 3 data bytes", fc15(9, 2, 3), 3],
  ["FC15 10 coils from 65526 end at 65535", "0f fff6 000a 02 0000", "ok"],
  ["FC15 10 coils from 65527 run past 65535", "0f fff7 000a 02 0000", 3],
  ["FC15 padding bit set", "0f 0000 000a 02 ff04", 3],
  ["FC15 all padding bits set", "0f 0000 0001 01 ff", 3],
  ["FC15 last coil set, padding zero", "0f 0000 000a 02 ff02", "ok"],
  ["FC15 header only", "0f 0000 0001", 3],
  // FC16: 1..123, byte count 2n, length consistent
  ["FC16 quantity 123 (byte count 246)", fc16(123), "ok"],
  ["FC16 quantity 124", fc16(124), 3],
  ["FC16 quantity 0", fc16(0), 3],
  ["FC16 quantity 2, byte count 3", fc16(2, 3), 3],
  ["FC16 quantity 2, byte count 2", fc16(2, 2), 3],
  ["FC16 byte count 4 but 3 data bytes", fc16(2, 4, 3), 3],
  ["FC16 byte count 4 but 5 data bytes", fc16(2, 4, 5), 3],
  ["FC16 2 at 65534", "10 fffe 0002 04 00000000", "ok"],
  ["FC16 2 at 65535", "10 ffff 0002 04 00000000", 3],
  ["FC16 header only", "10 0000 0001", 3],
  // FC22
  ["FC22 too short", "16 0004 00f2 00", 3],
  ["FC22 too long", "16 0004 00f2 0025 00", 3],
  // FC23: read 1..125, write 1..121, byte count 2 × write, length consistent
  ["FC23 read 125 write 121 (byte count 242)", fc23(125, 121), "ok"],
  ["FC23 read 126", fc23(126, 1), 3],
  ["FC23 read 0", fc23(0, 1), 3],
  ["FC23 write 122", fc23(1, 122), 3],
  ["FC23 write 0", fc23(1, 0), 3],
  ["FC23 byte count 3 for 2 registers", fc23(1, 2, 3), 3],
  ["FC23 byte count 4 but 3 data bytes", fc23(1, 2, 4, 3), 3],
  ["FC23 byte count 4 but 5 data bytes", fc23(1, 2, 4, 5), 3],
  ["FC23 read runs past 65535", fc23(2, 1, 2, 2, 65535, 0), 3],
  ["FC23 write runs past 65535", fc23(1, 2, 4, 4, 0, 65535), 3],
  ["FC23 header cut short", "17 0000 0001 0000 0001", 3],
  // FC43/14
  ["FC43/14 code 1..4", "2b 0e 03 00", "ok"],
  ["FC43/14 code 0", "2b 0e 00 00", 3],
  ["FC43/14 code 5", "2b 0e 05 00", 3],
  ["FC43/14 without object id", "2b 0e 01", 3],
  ["FC43/14 one byte too many", "2b 0e 01 00 00", 3],
  ["FC43 without MEI type", "2b", 3],
  // function codes
  ["function code 0", "00 0000 0001", 1],
  ["function code 0x80", "80", 1],
  ["function code 0x83 (an exception response, not a request)", "83 02", 1],
  ["function code 0xFF", "ff 0000", 1],
  ["an empty PDU", "", 1],
  ["a PDU of 254 bytes", `10 ${"00".repeat(253)}`, 3],
];

t.test("limits at their edges: within → ok, one past → exception 03", async (t) => {
  for (const [name, wire, expected] of LIMIT_CASES) {
    const pdu = hex(wire);
    const r = parseRequest(pdu);
    if (expected === "ok") {
      t.equal(r.ok, true, `${name}: ok${r.ok ? "" : ` (${r.reason})`}`);
      if (r.ok) t.equal(encodeRequest(r.request).toString("hex"), pdu.toString("hex"), `${name}: re-encodes to the same bytes`);
    } else {
      t.strictSame(r.ok ? "ok" : r.exception, expected, `${name}: exception ${expected}`);
      if (!r.ok) {
        t.equal(r.fc, pdu[0] ?? 0, `${name}: the exception names the request's function code`);
        t.type(r.reason, "string");
      }
    }
  }
});

t.test("the limits are the spec's", async (t) => {
  t.strictSame(LIMITS, { readBits: 2000, readRegisters: 125, writeCoils: 1968, writeRegisters: 123, readWriteRead: 125, readWriteWrite: 121 });
  t.equal(ExceptionCode.IllegalDataValue, 3);
  t.equal(ExceptionCode.GatewayTargetFailedToRespond, 0x0b);
});

t.test("reasons say what was wrong", async (t) => {
  const reason = (wire: string) => {
    const r = parseRequest(hex(wire));
    return r.ok ? "ok" : r.reason;
  };
  t.match(reason(read(3, 0, 126)), /quantity 126 is outside 1\.\.125/);
  t.match(reason("05 0000 1234"), /0x1234/);
  t.match(reason(fc15(9, 1)), /byte count 1 does not match quantity 9/);
  t.match(reason("0f 0000 000a 02 ff04"), /padding/);
  t.match(reason(read(3, 65535, 2)), /past address 65535/);
});

t.test("encodeRequest refuses what the gateway must never send", async (t) => {
  const bad: Array<[string, ModbusRequest]> = [
    ["FC3 quantity 126", { kind: "read-holding-registers", fc: 3, address: 0, quantity: 126 }],
    ["FC1 quantity 0", { kind: "read-coils", fc: 1, address: 0, quantity: 0 }],
    ["FC4 past 65535", { kind: "read-input-registers", fc: 4, address: 65535, quantity: 2 }],
    ["FC3 address 1.5", { kind: "read-holding-registers", fc: 3, address: 1.5, quantity: 1 }],
    ["FC3 address 65536", { kind: "read-holding-registers", fc: 3, address: 65536, quantity: 1 }],
    ["FC5 value 2", { kind: "write-single-coil", fc: 5, address: 0, value: 2 as 1 }],
    ["FC6 value 70000", { kind: "write-single-register", fc: 6, address: 0, value: 70000 }],
    ["FC6 value -1", { kind: "write-single-register", fc: 6, address: 0, value: -1 }],
    ["FC15 values shorter than quantity", { kind: "write-multiple-coils", fc: 15, address: 0, quantity: 3, values: [1, 0] }],
    ["FC15 a value of 2", { kind: "write-multiple-coils", fc: 15, address: 0, quantity: 2, values: [1, 2 as 1] }],
    ["FC15 quantity 1969", { kind: "write-multiple-coils", fc: 15, address: 0, quantity: 1969, values: new Array(1969).fill(0) }],
    ["FC16 quantity 124", { kind: "write-multiple-registers", fc: 16, address: 0, quantity: 124, values: new Array(124).fill(0) }],
    ["FC16 values longer than quantity", { kind: "write-multiple-registers", fc: 16, address: 0, quantity: 1, values: [1, 2] }],
    ["FC16 a value of 65536", { kind: "write-multiple-registers", fc: 16, address: 0, quantity: 1, values: [65536] }],
    ["FC23 write 122", { kind: "read-write-multiple-registers", fc: 23, read: { address: 0, quantity: 1 }, write: { address: 0, quantity: 122, values: new Array(122).fill(0) } }],
    ["FC23 values shorter than quantity", { kind: "read-write-multiple-registers", fc: 23, read: { address: 0, quantity: 1 }, write: { address: 0, quantity: 2, values: [1] } }],
    ["FC43 code 5", { kind: "read-device-identification", fc: 43, meiType: 14, readDeviceIdCode: 5 as 1, objectId: 0 }],
    ["FC43 object id 256", { kind: "read-device-identification", fc: 43, meiType: 14, readDeviceIdCode: 4, objectId: 256 }],
    ["FC8 data too long", { kind: "diagnostics", fc: 8, subFunction: 0, data: Buffer.alloc(251) }],
    ["unsupported with a parsed function code", { kind: "unsupported", fc: 3, data: hex("0000 0001") }],
    ["unsupported FC43 with MEI type 14", { kind: "unsupported", fc: 43, data: hex("0e 01 00") }],
    ["unsupported function code 0x90", { kind: "unsupported", fc: 0x90, data: Buffer.alloc(0) }],
    ["unsupported function code 256", { kind: "unsupported", fc: 256, data: Buffer.alloc(0) }],
    ["a kind with another kind's fc", { kind: "read-coils", fc: 3 as 1, address: 0, quantity: 1 }],
  ];
  for (const [name, req] of bad) t.throws(() => encodeRequest(req), RangeError, name);
});
