/// <reference lib="dom" />
/**
 * Three orthogonal slices (axial, coronal, sagittal) of a CT volume with its label map drawn
 * over it in the class colours, with Niivue (WebGL2). Slices move with the mouse wheel over a
 * view, a click, the arrow keys (Niivue's own controls) or the three sliders, which follow the
 * crosshair either way.
 */

import { Niivue, NVImage, SHOW_RENDER, SLICE_TYPE } from "@niivue/niivue";
import { h } from "./dom.ts";
import { classCss, classRgb } from "./palette.ts";

/** A NIfTI file's bytes and its name (the name's extension tells Niivue the format). */
export interface VolumeFile {
  bytes: ArrayBuffer;
  name: string;
}

/** CT values below this look like Hounsfield units (air at −1000). */
const HU_AIR_THRESHOLD = -500;
/** The CT window voxseg trains with (see the checkpoint's normalisation). */
const CT_WINDOW: [number, number] = [-1000, 400];
const OVERLAY_OPACITY = 0.55;

/** The page elements the viewer drives. */
export interface SliceViewerElements {
  canvas: HTMLCanvasElement;
  /** Sliders for x (sagittal), y (coronal) and z (axial) voxel indices. */
  sliders: [HTMLInputElement, HTMLInputElement, HTMLInputElement];
  /** Where the class colours are explained. */
  legend: HTMLElement;
  /** Carries `data-state` (empty, loading, ready, error) for the page and its tests. */
  root: HTMLElement;
}

export class SliceViewer {
  readonly #el: SliceViewerElements;
  readonly #nv: Niivue;
  #attached: Promise<unknown> | undefined;
  /** Bumped by each show(): a slower earlier load must not replace a later one. */
  #generation = 0;

  constructor(elements: SliceViewerElements) {
    this.#el = elements;
    this.#nv = new Niivue({
      backColor: [0, 0, 0, 1],
      crosshairColor: [1, 1, 0, 0.6],
      show3Dcrosshair: false,
      isColorbar: false,
      isOrientCube: false,
      multiplanarShowRender: SHOW_RENDER.NEVER,
      dragAndDropEnabled: false,
      loadingText: "",
      logLevel: "warn",
    });
    this.#nv.onLocationChange = (location) => this.#syncSliders(location);
    elements.sliders.forEach((slider) =>
      slider.addEventListener("input", () => this.#moveToSliders())
    );
    elements.root.dataset.state = "empty";
  }

  /** Shows `image` in grey with `labels` (a label map of the same grid) over it. */
  async show(image: VolumeFile, labels: VolumeFile | undefined, classNames: string[]) {
    const generation = ++this.#generation;
    const { root } = this.#el;
    root.dataset.state = "loading";
    try {
      this.#attached ??= this.#nv.attachToCanvas(this.#el.canvas);
      await this.#attached;
      const ct = await NVImage.loadFromUrl({
        url: image.bytes,
        name: niftiName(image, "image"),
        colormap: "gray",
      });
      const seg = labels
        ? await NVImage.loadFromUrl({
          url: labels.bytes,
          name: niftiName(labels, "labels"),
          opacity: OVERLAY_OPACITY,
        })
        : undefined;
      if (generation !== this.#generation) return;
      if ((ct.global_min ?? 0) < HU_AIR_THRESHOLD) [ct.cal_min, ct.cal_max] = CT_WINDOW;
      const classes = Math.max(classNames.length, Math.round(seg?.global_max ?? 0) + 1);
      seg?.setColormapLabel(labelColormap(classes, classNames));
      const nv = this.#nv;
      while (nv.volumes.length) nv.removeVolume(nv.volumes[0]);
      nv.addVolume(ct);
      if (seg) nv.addVolume(seg);
      nv.setSliceType(SLICE_TYPE.MULTIPLANAR);
      // Niivue's crosshair is voxels wide: one voxel is thin on a 512² CT, a bar on a 32².
      const largest = Math.max(...(ct.dims ?? [0, 128]).slice(1, 4));
      nv.setCrosshairWidth(Math.min(1, Math.max(0.25, largest / 128)));
      this.#setUpSliders(ct);
      this.#showLegend(labels ? classNames : [], classes);
      nv.updateGLVolume();
      nv.drawScene();
      root.dataset.state = "ready";
      root.dataset.volumes = String(nv.volumes.length);
    } catch (e) {
      if (generation === this.#generation) root.dataset.state = "error";
      throw e;
    }
  }

  #setUpSliders(ct: NVImage): void {
    const dims = ct.dims ?? [3, 1, 1, 1];
    this.#el.sliders.forEach((slider, axis) => {
      const n = dims[axis + 1];
      slider.min = "0";
      slider.max = String(Math.max(0, n - 1));
      slider.value = String(Math.floor(n / 2));
      slider.disabled = false;
    });
    this.#moveToSliders();
  }

  #moveToSliders(): void {
    const nv = this.#nv;
    if (nv.volumes.length === 0) return;
    const vox = this.#el.sliders.map((s) => Number(s.value)) as [number, number, number];
    nv.scene.crosshairPos = nv.vox2frac(vox);
    nv.drawScene();
  }

  #syncSliders(location: unknown): void {
    const vox = (location as { vox?: ArrayLike<number> } | undefined)?.vox;
    if (!vox) return;
    this.#el.sliders.forEach((slider, axis) => slider.value = String(Math.round(vox[axis])));
  }

  #showLegend(classNames: string[], classes: number): void {
    const items = [];
    for (let c = 1; c < classes; c++) {
      const swatch = h("span", { class: "swatch" });
      swatch.style.backgroundColor = classCss(c);
      items.push(h("li", {}, swatch, classNames[c] ?? `class ${c}`));
    }
    this.#el.legend.replaceChildren(...items);
  }
}

/** `file.name` when it ends in .nii or .nii.gz; otherwise a name that says what the bytes are. */
function niftiName(file: VolumeFile, stem: string): string {
  if (/\.nii(\.gz)?$/i.test(file.name)) return file.name;
  const b = new Uint8Array(file.bytes, 0, Math.min(2, file.bytes.byteLength));
  return b[0] === 0x1f && b[1] === 0x8b ? `${stem}.nii.gz` : `${stem}.nii`;
}

/** A Niivue label colour table: background transparent, class c in its palette colour. */
function labelColormap(classes: number, names: string[]) {
  const I = Array.from({ length: classes }, (_, c) => c);
  const rgb = I.map((c) => (c === 0 ? [0, 0, 0] : classRgb(c)));
  return {
    R: rgb.map((v) => v[0]),
    G: rgb.map((v) => v[1]),
    B: rgb.map((v) => v[2]),
    A: I.map((c) => (c === 0 ? 0 : 255)),
    I,
    labels: I.map((c) => names[c] ?? `class ${c}`),
  };
}
