/**
 * Deterministic topological ordering, used for plugin dependencies and for
 * stage order within a phase. Ties keep the input order, so the same plugin
 * list always gives the same pipeline.
 *
 * @module
 */

/** A node with the names it must come after. */
export interface OrderNode {
  name: string;
  after: readonly string[];
}

/** Thrown when the constraints form a cycle; `cycle` names the nodes in it. */
export class CycleError extends Error {
  constructor(readonly cycle: string[]) {
    super(`cycle: ${cycle.join(" -> ")}`);
    this.name = "CycleError";
  }
}

/**
 * Order nodes so each comes after every node it names. Names that are not in
 * the list are ignored (they are optional ordering hints).
 */
export function stableTopoSort<T extends OrderNode>(nodes: readonly T[]): T[] {
  const byName = new Map(nodes.map((n) => [n.name, n]));
  const placed = new Set<string>();
  const result: T[] = [];
  const remaining = [...nodes];
  while (remaining.length > 0) {
    // Kahn's algorithm, always taking the earliest ready node, keeps ties stable.
    const index = remaining.findIndex((n) =>
      n.after.every((dep) => placed.has(dep) || !byName.has(dep) || dep === n.name)
    );
    if (index === -1) throw new CycleError(findCycle(remaining, byName));
    const [node] = remaining.splice(index, 1);
    placed.add(node.name);
    result.push(node);
  }
  return result;
}

function findCycle<T extends OrderNode>(remaining: T[], byName: Map<string, T>): string[] {
  const left = new Set(remaining.map((n) => n.name));
  let current = remaining[0].name;
  const path: string[] = [];
  while (!path.includes(current)) {
    path.push(current);
    const next = byName.get(current)!.after.find((d) => left.has(d) && d !== current);
    if (next === undefined) break;
    current = next;
  }
  return [...path.slice(path.indexOf(current)), current];
}
