/**
 * ONNX export of a voxseg network (src/nn/model.ts: a UNet3D or a PlainConvUNet): the same
 * network as an ONNX model (opset 17) that onnxruntime, TensorRT or any other ONNX runtime can
 * run without voxseg.
 *
 * Graph: input "image" [N, C, D, H, W] float32 with N, D, H, W symbolic (D, H, W must be
 * multiples of what voxseg's forward needs: 2^(depth−1), or a PlainConvUNet's product of
 * strides per axis); Conv (UNet3D: 3×3×3, pads 1; PlainConvUNet: the stage's kernel_shape,
 * pads k // 2 and, on a stage's first convolution, its strides) → optional
 * InstanceNormalization / BatchNormalization (inference: running statistics) → Relu / Elu /
 * LeakyRelu per convolution; UNet3D: MaxPool 2 down, ConvTranspose 2 up; PlainConvUNet:
 * ConvTranspose with kernel_shape = strides = the stage's stride up; Concat(skip, up) on
 * axis 1; a 1×1×1 Conv head giving logits and Softmax on axis 1 giving the output
 * "probabilities" (optionally "logits" too). Initializers carry the `state_dict` names of the
 * checkpoint, float32 raw little-endian.
 *
 * The protobuf encoding is written here (no ONNX library): messages are built bottom-up as
 * lists of byte chunks, so the weights are copied only once, into the final buffer. Field
 * numbers are those of onnx/onnx.proto.
 */

import type { UNet3DConfig } from "./unet3d.ts";
import type { ModelConfig } from "./model_config.ts";
import {
  type CompletePlainConfig,
  completePlainConfig,
  cumulativeStrides,
  type PlainConvUNetConfig,
  stageChannels,
} from "./plain_unet.ts";
import { concatBytes } from "../base/bytes.ts";

/** ONNX operator set the export targets (ai.onnx domain). */
export const ONNX_OPSET = 17;
/** IR version that goes with opset 17 (ONNX 1.12). */
export const ONNX_IR_VERSION = 8;

/**
 * The constants voxseg's forward uses (defaults of src/autograd/functional.ts): norm ε,
 * ELU α, leaky-ReLU slope. The tests compare the export with the GPU forward, so a drift fails.
 */
const NORM_EPS = 1e-5;
const ELU_ALPHA = 1;
const LEAKY_RELU_SLOPE = 0.01;

// ---------------------------------------------------------------------------------------------
// Protobuf wire format

/** Protobuf wire types. */
const WIRE = { varint: 0, fixed32: 5, bytes: 2 } as const;

/**
 * The base-128 varint encoding of an integer. Negative values are their 64-bit two's
 * complement (10 bytes), as protobuf writes int32/int64. Numbers must be safe integers;
 * bigints must fit int64 or uint64.
 *
 * @example
 * encodeVarint(300); // Uint8Array [0xac, 0x02]
 */
export function encodeVarint(value: number | bigint): Uint8Array {
  let v: bigint | number;
  if (typeof value === "bigint") {
    if (value < -(2n ** 63n) || value >= 2n ** 64n) {
      throw new RangeError(`varint: ${value} does not fit 64 bits`);
    }
    v = BigInt.asUintN(64, value);
  } else {
    if (!Number.isSafeInteger(value)) {
      throw new RangeError(`varint: ${value} is not a safe integer`);
    }
    v = value < 0 ? BigInt.asUintN(64, BigInt(value)) : value;
  }
  const out: number[] = [];
  if (typeof v === "number") {
    // Division, not bit operations: those truncate to 32 bits.
    while (v >= 128) {
      out.push((v % 128) | 128);
      v = Math.floor(v / 128);
    }
    out.push(v);
  } else {
    while (v >= 128n) {
      out.push(Number(v & 127n) | 128);
      v >>= 7n;
    }
    out.push(Number(v));
  }
  return Uint8Array.from(out);
}

/**
 * A protobuf message being written: fields are appended in call order as byte chunks.
 * Embedding a message in another shares its chunks (no copy); {@link finish} joins them once.
 *
 * @example
 * const entry = new ProtoMessage().string(1, "key").string(2, "value");
 * const bytes = new ProtoMessage().message(14, entry).finish();
 */
export class ProtoMessage {
  #chunks: Uint8Array[] = [];
  #length = 0;

  /** Encoded size in bytes. */
  get byteLength(): number {
    return this.#length;
  }

  /** A varint field (int32, int64, enum, bool). */
  varint(field: number, value: number | bigint): this {
    this.#tag(field, WIRE.varint);
    return this.#push(encodeVarint(value));
  }

  /** A 32-bit float field (fixed32, little-endian). */
  float(field: number, value: number): this {
    this.#tag(field, WIRE.fixed32);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    return this.#push(b);
  }

  /** A length-delimited bytes field; `data` is referenced, not copied, until {@link finish}. */
  bytes(field: number, data: Uint8Array): this {
    this.#tag(field, WIRE.bytes);
    this.#push(encodeVarint(data.length));
    return this.#push(data);
  }

  /** A UTF-8 string field. */
  string(field: number, value: string): this {
    return this.bytes(field, new TextEncoder().encode(value));
  }

  /** An embedded message field. */
  message(field: number, m: ProtoMessage): this {
    this.#tag(field, WIRE.bytes);
    this.#push(encodeVarint(m.#length));
    for (const c of m.#chunks) this.#push(c);
    return this;
  }

  /** The encoded message as one buffer. */
  finish(): Uint8Array {
    return concatBytes(this.#chunks, this.#length);
  }

  #tag(field: number, wire: number): void {
    if (!Number.isInteger(field) || field < 1 || field > 2 ** 29 - 1) {
      throw new RangeError(`protobuf field number must be in 1..2^29−1, got ${field}`);
    }
    this.#push(encodeVarint(field * 8 + wire));
  }

  #push(b: Uint8Array): this {
    this.#chunks.push(b);
    this.#length += b.length;
    return this;
  }
}

// ---------------------------------------------------------------------------------------------
// ONNX messages (field numbers of onnx.proto)

/** TensorProto.DataType FLOAT. */
const FLOAT = 1;
/** AttributeProto.AttributeType. */
const ATTR = { float: 1, int: 2, ints: 7 } as const;

type Attribute =
  | { name: string; float: number }
  | { name: string; int: number }
  | { name: string; ints: readonly number[] };

function attributeProto(a: Attribute): ProtoMessage {
  const m = new ProtoMessage().string(1, a.name);
  if ("float" in a) return m.varint(20, ATTR.float).float(2, a.float);
  if ("int" in a) return m.varint(20, ATTR.int).varint(3, a.int);
  m.varint(20, ATTR.ints);
  for (const v of a.ints) m.varint(8, v); // repeated int64 ints = 8 (unpacked, as declared)
  return m;
}

const littleEndian = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

/** Float32 values as little-endian bytes (a view where the host is little-endian). */
function float32Bytes(data: Float32Array): Uint8Array {
  if (littleEndian) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const out = new Uint8Array(data.length * 4);
  const view = new DataView(out.buffer);
  data.forEach((v, i) => view.setFloat32(4 * i, v, true));
  return out;
}

function tensorProto(name: string, shape: readonly number[], data: Float32Array): ProtoMessage {
  const m = new ProtoMessage();
  for (const d of shape) m.varint(1, d); // dims
  return m.varint(2, FLOAT).string(8, name).bytes(9, float32Bytes(data)); // data_type, name, raw_data
}

/** A dimension: a size, or a symbolic name (dim_param). */
type Dim = number | string;

function valueInfoProto(name: string, dims: readonly Dim[]): ProtoMessage {
  const shape = new ProtoMessage();
  for (const d of dims) {
    const dim = new ProtoMessage();
    if (typeof d === "number") dim.varint(1, d);
    else dim.string(2, d);
    shape.message(1, dim); // TensorShapeProto.dim
  }
  const tensorType = new ProtoMessage().varint(1, FLOAT).message(2, shape); // elem_type, shape
  const type = new ProtoMessage().message(1, tensorType); // TypeProto.tensor_type
  return new ProtoMessage().string(1, name).message(2, type);
}

/** Nodes and initializers of a graph under construction, in topological order. */
class GraphBuilder {
  readonly nodes: ProtoMessage[] = [];
  readonly initializers: ProtoMessage[] = [];

  /** Adds a node named `output` (its only output); returns the output's name. */
  node(op: string, inputs: readonly string[], output: string, attrs: Attribute[] = []): string {
    const m = new ProtoMessage();
    for (const i of inputs) m.string(1, i);
    m.string(2, output).string(3, output).string(4, op);
    for (const a of attrs) m.message(5, attributeProto(a));
    this.nodes.push(m);
    return output;
  }

  initializer(name: string, shape: readonly number[], data: Float32Array): string {
    this.initializers.push(tensorProto(name, shape, data));
    return name;
  }
}

// ---------------------------------------------------------------------------------------------
// The networks

/** A weight on the host: shape and float32 values (a checkpoint tensor). */
export interface OnnxWeight {
  shape: readonly number[];
  data: Float32Array;
}

export interface UNet3DOnnxOptions {
  /** Also output the logits (before softmax) as "logits". Default false. */
  logits?: boolean;
  /** Model metadata_props: key → value (e.g. class names, normalisation as JSON). */
  metadata?: Readonly<Record<string, string>>;
  /** ModelProto.producer_version, e.g. voxseg's version. */
  producerVersion?: string;
  /** ModelProto.doc_string; a default describes the input and outputs. */
  docString?: string;
}

/** Options of {@link modelToOnnx} (the same for either architecture). */
export type ModelOnnxOptions = UNet3DOnnxOptions;

/** A block's convolutions: `count` of them, each with its kernel and the first's stride. */
interface ConvBlock {
  count: number;
  kernel: readonly number[];
  stride: readonly number[];
}

/** Conv (+ norm) tensors of a block's convolutions, in the `state_dict` order of src/nn. */
function blockShapes(
  c: ModelConfig,
  shapes: Map<string, number[]>,
  prefix: string,
  cin: number,
  cout: number,
  kernel: readonly number[],
): void {
  for (let i = 1; i <= c.convsPerLevel; i++) {
    shapes.set(`${prefix}.conv${i}.weight`, [cout, i === 1 ? cin : cout, ...kernel]);
    shapes.set(`${prefix}.conv${i}.bias`, [cout]);
    if (c.norm === "none") continue;
    const stats = c.norm === "batch" ? ["running_mean", "running_var"] : [];
    for (const k of ["weight", "bias", ...stats]) shapes.set(`${prefix}.norm${i}.${k}`, [cout]);
  }
}

/**
 * Every tensor a UNet3D of `config` has, with its shape, in graph order — the `state_dict`
 * layout of src/nn/unet3d.ts (conv weights [out, in, 3, 3, 3], transposed-conv weights
 * [in, out, 2, 2, 2], batch-norm running statistics included).
 */
export function unet3dParameterShapes(config: UNet3DConfig): Map<string, number[]> {
  const c = config;
  const ch = (l: number) => c.baseChannels * 2 ** l;
  const shapes = new Map<string, number[]>();
  const k3 = [3, 3, 3];
  for (let l = 0; l < c.depth; l++) {
    blockShapes(c, shapes, `enc.${l}`, l === 0 ? c.inChannels : ch(l - 1), ch(l), k3);
  }
  for (let l = c.depth - 2; l >= 0; l--) {
    shapes.set(`up.${l}.weight`, [ch(l + 1), ch(l), 2, 2, 2]);
    shapes.set(`up.${l}.bias`, [ch(l)]);
    blockShapes(c, shapes, `dec.${l}`, 2 * ch(l), ch(l), k3);
  }
  shapes.set("head.weight", [c.classes, ch(0), 1, 1, 1]);
  shapes.set("head.bias", [c.classes]);
  return shapes;
}

/**
 * Every tensor a PlainConvUNet of `config` has, with its shape, in graph order — the
 * `state_dict` layout of src/nn/plain_unet.ts (conv weights [out, in, kd, kh, kw], transposed
 * conv weights [in, out, sd, sh, sw]); the auxiliary deep-supervision heads are left out, as
 * the exported graph does not use them.
 */
export function plainParameterShapes(config: PlainConvUNetConfig): Map<string, number[]> {
  const c = completePlainConfig(config);
  const ch = (s: number) => stageChannels(c, s);
  const shapes = new Map<string, number[]>();
  for (let s = 0; s < c.depth; s++) {
    blockShapes(c, shapes, `enc.${s}`, s === 0 ? c.inChannels : ch(s - 1), ch(s), c.kernels[s]);
  }
  for (let s = c.depth - 2; s >= 0; s--) {
    shapes.set(`up.${s}.weight`, [ch(s + 1), ch(s), ...c.strides[s + 1]]);
    shapes.set(`up.${s}.bias`, [ch(s)]);
    blockShapes(c, shapes, `dec.${s}`, 2 * ch(s), ch(s), c.kernels[s]);
  }
  shapes.set("head.weight", [c.classes, ch(0), 1, 1, 1]);
  shapes.set("head.bias", [c.classes]);
  return shapes;
}

/** The tensors the exported graph of `config` reads (either architecture). */
export function modelParameterShapes(config: ModelConfig): Map<string, number[]> {
  return config.arch === "plain" ? plainParameterShapes(config) : unet3dParameterShapes(config);
}

/** Adds every tensor of `shapes` from `weights`; throws naming a missing or misshapen one. */
function addInitializers(
  g: GraphBuilder,
  shapes: Map<string, number[]>,
  weights: ReadonlyMap<string, OnnxWeight>,
): void {
  for (const [name, shape] of shapes) {
    const w = weights.get(name);
    if (!w) throw new Error(`ONNX export: no tensor "${name}" for a model of this config`);
    const n = shape.reduce((a, b) => a * b, 1);
    if (w.shape.join() !== shape.join() || w.data.length !== n) {
      throw new Error(
        `ONNX export: tensor "${name}" has shape [${w.shape}] (${w.data.length} values), ` +
          `the model config needs [${shape}]`,
      );
    }
    g.initializer(name, shape, w.data);
  }
}

/** Conv → norm → activation nodes of one block, as the GPU forward runs them. */
function blockNodes(g: GraphBuilder, c: ModelConfig, prefix: string, x: string, b: ConvBlock) {
  let h = x;
  for (let i = 1; i <= b.count; i++) {
    const p = `${prefix}.conv${i}`, n = `${prefix}.norm${i}`;
    h = g.node("Conv", [h, `${p}.weight`, `${p}.bias`], p, [
      { name: "kernel_shape", ints: b.kernel },
      { name: "pads", ints: [...b.kernel, ...b.kernel].map((k) => Math.floor(k / 2)) },
      { name: "strides", ints: i === 1 ? b.stride : [1, 1, 1] },
    ]);
    const eps = { name: "epsilon", float: NORM_EPS };
    if (c.norm === "instance") {
      h = g.node("InstanceNormalization", [h, `${n}.weight`, `${n}.bias`], n, [eps]);
    } else if (c.norm === "batch") {
      const inputs = [h, `${n}.weight`, `${n}.bias`, `${n}.running_mean`, `${n}.running_var`];
      h = g.node("BatchNormalization", inputs, n, [eps]);
    }
    const out = `${prefix}.act${i}`;
    if (c.activation === "relu") h = g.node("Relu", [h], out);
    else if (c.activation === "elu") {
      h = g.node("Elu", [h], out, [{ name: "alpha", float: ELU_ALPHA }]);
    } else h = g.node("LeakyRelu", [h], out, [{ name: "alpha", float: LEAKY_RELU_SLOPE }]);
  }
  return h;
}

/** The UNet3D graph from "image" to "logits": MaxPool down, ConvTranspose 2 up. */
function unet3dNodes(g: GraphBuilder, c: UNet3DConfig): void {
  const block: ConvBlock = { count: c.convsPerLevel, kernel: [3, 3, 3], stride: [1, 1, 1] };
  const down = [{ name: "kernel_shape", ints: [2, 2, 2] }, { name: "strides", ints: [2, 2, 2] }];
  const skips: string[] = [];
  let h = "image";
  for (let l = 0; l < c.depth; l++) {
    if (l > 0) h = g.node("MaxPool", [h], `enc.${l}.pool`, down);
    h = blockNodes(g, c, `enc.${l}`, h, block);
    skips.push(h);
  }
  for (let l = c.depth - 2; l >= 0; l--) {
    h = g.node("ConvTranspose", [h, `up.${l}.weight`, `up.${l}.bias`], `up.${l}`, down);
    h = g.node("Concat", [skips[l], h], `dec.${l}.concat`, [{ name: "axis", int: 1 }]);
    h = blockNodes(g, c, `dec.${l}`, h, block);
  }
  g.node("Conv", [h, "head.weight", "head.bias"], "logits", [
    { name: "kernel_shape", ints: [1, 1, 1] },
  ]);
}

/** The PlainConvUNet graph from "image" to "logits": strided Conv down, ConvTranspose up. */
function plainNodes(g: GraphBuilder, c: CompletePlainConfig): void {
  const skips: string[] = [];
  let h = "image";
  for (let s = 0; s < c.depth; s++) {
    const block = { count: c.convsPerLevel, kernel: c.kernels[s], stride: c.strides[s] };
    h = blockNodes(g, c, `enc.${s}`, h, block);
    skips.push(h);
  }
  for (let s = c.depth - 2; s >= 0; s--) {
    const up = c.strides[s + 1];
    h = g.node("ConvTranspose", [h, `up.${s}.weight`, `up.${s}.bias`], `up.${s}`, [
      { name: "kernel_shape", ints: up },
      { name: "strides", ints: up },
    ]);
    h = g.node("Concat", [skips[s], h], `dec.${s}.concat`, [{ name: "axis", int: 1 }]);
    const block = { count: c.convsPerLevel, kernel: c.kernels[s], stride: [1, 1, 1] };
    h = blockNodes(g, c, `dec.${s}`, h, block);
  }
  g.node("Conv", [h, "head.weight", "head.bias"], "logits", [
    { name: "kernel_shape", ints: [1, 1, 1] },
  ]);
}

/**
 * A voxseg network of `config` (either architecture: src/nn/model.ts) with `weights`
 * (checkpoint tensors by `state_dict` name) as ONNX model bytes; see the module comment for
 * the graph. Throws naming the first missing or misshapen weight. Extra tensors in `weights`
 * (deep-supervision heads) are ignored.
 *
 * @example
 * const { weights, meta } = await loadCheckpoint("runs/a/best.safetensors");
 * await Deno.writeFile("best.onnx", modelToOnnx(meta.model, weights));
 */
export function modelToOnnx(
  config: ModelConfig,
  weights: ReadonlyMap<string, OnnxWeight>,
  options: ModelOnnxOptions = {},
): Uint8Array {
  const g = new GraphBuilder();
  addInitializers(g, modelParameterShapes(config), weights);
  let name: string, multiple: string, summary: string;
  if (config.arch === "plain") {
    const c = completePlainConfig(config);
    plainNodes(g, c);
    const m = cumulativeStrides(c).at(-1)!;
    name = "voxseg_plain_unet";
    multiple = `D, H, W multiples of ${m.join(", ")}`;
    summary = `voxseg PlainConvUNet (base ${c.baseChannels}, ${c.depth} stages, strides ` +
      `${c.strides.map((s) => s.join("×")).join(" ")}, kernels ` +
      `${c.kernels.map((k) => k.join("×")).join(" ")}, ${c.activation}, norm ${c.norm})`;
  } else {
    unet3dNodes(g, config);
    name = "voxseg_unet3d";
    multiple = `D, H, W multiples of ${2 ** (config.depth - 1)}`;
    summary = `voxseg 3D U-Net (base ${config.baseChannels}, depth ${config.depth}, ` +
      `${config.activation}, norm ${config.norm})`;
  }
  g.node("Softmax", ["logits"], "probabilities", [{ name: "axis", int: 1 }]);
  const c = config;
  const doc = options.docString ??
    `${summary}. Input "image" [N, ${c.inChannels}, D, H, W] float32, normalised as the ` +
      `metadata says; ${multiple}. Output "probabilities" [N, ${c.classes}, D, H, ` +
      `W]: softmax over classes (axis 1)${options.logits ? '; "logits" before the softmax' : ""}.`;
  return modelProto(g, name, c, doc, options);
}

/**
 * The UNet3D export, kept under its first name: the same function as {@link modelToOnnx}, so
 * a PlainConvUNet config given here is exported as what it is.
 */
export const unet3dToOnnx: typeof modelToOnnx = modelToOnnx;

/** The ModelProto around the graph built in `g`. */
function modelProto(
  g: GraphBuilder,
  name: string,
  c: ModelConfig,
  doc: string,
  options: ModelOnnxOptions,
): Uint8Array {
  const graph = new ProtoMessage();
  for (const n of g.nodes) graph.message(1, n);
  graph.string(2, name);
  for (const t of g.initializers) graph.message(5, t);
  graph.message(11, valueInfoProto("image", ["N", c.inChannels, "D", "H", "W"]));
  const outDims = ["N", c.classes, "D", "H", "W"];
  graph.message(12, valueInfoProto("probabilities", outDims));
  if (options.logits) graph.message(12, valueInfoProto("logits", outDims));
  const model = new ProtoMessage()
    .varint(1, ONNX_IR_VERSION)
    .string(2, "voxseg");
  if (options.producerVersion) model.string(3, options.producerVersion);
  model.string(6, doc).message(7, graph);
  model.message(8, new ProtoMessage().string(1, "").varint(2, ONNX_OPSET));
  for (const [key, value] of Object.entries(options.metadata ?? {})) {
    model.message(14, new ProtoMessage().string(1, key).string(2, value));
  }
  return model.finish();
}
