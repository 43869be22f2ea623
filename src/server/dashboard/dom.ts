/// <reference lib="dom" />
/**
 * Builds DOM elements from data. Text always goes in as text nodes (never as HTML), so a job
 * name or an error message from the server cannot inject markup.
 */

type Child = Node | string | number | null | undefined | false;

/** Attributes (strings, set with setAttribute; `false`/`undefined` leave them out). */
export type Attributes = Record<string, string | number | boolean | undefined>;

/**
 * A new element with attributes and children.
 *
 * @example
 * h("a", { href: `/v1/jobs/${encodeURIComponent(id)}` }, id)
 */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Attributes = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === false) continue;
    el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** The element with this id; throws when the page lacks it (a broken index.html). */
export function byId<T extends HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`dashboard: no element #${id}`);
  return el as T;
}
