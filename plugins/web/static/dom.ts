/**
 * The slice of the browser DOM the game page uses, typed here.
 *
 * Why not `/// <reference lib="dom" />`: `deno check src/ plugins/ tests/`
 * checks every file in one program, so a DOM lib reference here would apply
 * to the server code too, where its stream and WebSocket types clash with
 * Deno's. These few interfaces let the page type-check under Deno's own
 * libs; at run time they are the browser's objects.
 *
 * @example
 * ```ts
 * import { byId, make } from "./dom.ts";
 * byId("log").append(make("p", { className: "you" }, "You open the door."));
 * ```
 *
 * @module
 */

/**
 * What the page's event handlers use of an event. Not `Event`: with the
 * browser tests in the same check, two `Event` declarations are in scope
 * (Deno's and the one playwright-core's types pull in).
 */
export interface PageEvent {
  preventDefault(): void;
}

/** A class list. */
export interface PageClassList {
  add(...tokens: string[]): void;
  remove(...tokens: string[]): void;
  toggle(token: string, force?: boolean): boolean;
  contains(token: string): boolean;
}

/** An element, with the members the page touches. */
export interface PageElement extends EventTarget {
  id: string;
  hidden: boolean;
  className: string;
  textContent: string | null;
  readonly dataset: Record<string, string | undefined>;
  readonly classList: PageClassList;
  readonly lastElementChild: PageElement | null;
  readonly childElementCount: number;
  scrollTop: number;
  readonly scrollHeight: number;
  readonly clientHeight: number;
  tabIndex: number;
  setAttribute(name: string, value: string): void;
  removeAttribute(name: string): void;
  getAttribute(name: string): string | null;
  append(...nodes: (PageElement | string)[]): void;
  replaceChildren(...nodes: (PageElement | string)[]): void;
  remove(): void;
  focus(options?: { preventScroll?: boolean }): void;
  closest(selectors: string): PageElement | null;
  querySelector(selectors: string): PageElement | null;
  querySelectorAll(selectors: string): ArrayLike<PageElement>;
}

/** Form controls (`input`, `textarea`, `button`). */
export interface PageControl extends PageElement {
  value: string;
  disabled: boolean;
  checked: boolean;
  readonly name: string;
}

/** A form. */
export interface PageForm extends PageElement {
  readonly elements: ArrayLike<PageControl>;
  reset(): void;
}

interface PageDocument {
  getElementById(id: string): PageElement | null;
  createElement(tag: string): PageElement;
  readonly activeElement: PageElement | null;
  readonly documentElement: PageElement;
}

/** The page's document. The cast is the one place the browser global is typed. */
export const doc: PageDocument = (globalThis as unknown as { document: PageDocument }).document;

/** An element the page's HTML must contain; a missing one is a bug in index.html. */
export function byId<T extends PageElement = PageElement>(id: string): T {
  const found = doc.getElementById(id);
  if (!found) throw new Error(`index.html has no #${id}`);
  return found as T;
}

/**
 * Create an element with properties and children. Text is always set as
 * text, never parsed as HTML, so story text cannot inject markup.
 */
export function make(
  tag: string,
  props: Partial<Pick<PageElement, "className" | "id" | "hidden" | "tabIndex">> & {
    attrs?: Record<string, string>;
    data?: Record<string, string>;
  } = {},
  ...children: (PageElement | string | null | undefined)[]
): PageElement {
  const element = doc.createElement(tag);
  const { attrs, data, ...rest } = props;
  Object.assign(element, rest);
  for (const [k, v] of Object.entries(attrs ?? {})) element.setAttribute(k, v);
  for (const [k, v] of Object.entries(data ?? {})) element.dataset[k] = v;
  for (const child of children) if (child !== null && child !== undefined) element.append(child);
  return element;
}
