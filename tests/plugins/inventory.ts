/**
 * A third-party-style subsystem, loaded through DM_PLUGINS in tests to prove
 * that one module can add an intent, a prompt section and a write without
 * any change to core.
 */
import { z } from "zod";
import { definePlugin } from "../../src/plugin/api.ts";

const InventoryIntent = z.object({
  action: z.enum(["none", "add", "drop"]),
  item: z.string().nullable(),
});

/** The inventory plugin. */
export default definePlugin({
  name: "inventory",
  version: "1.0.0",
  dependsOn: ["narrative"],
  setup(host) {
    host.addSubsystem({
      name: "inventory",
      intentKey: "inventory_intent",
      intentSchema: InventoryIntent,
      instructions: "Use inventory_intent to add or drop items the player picks up or loses.",
      promptOrder: 600,
      promptSection: (ctx) => {
        const items = (ctx.context.plugin_state.inventory as string[] | undefined) ?? [];
        return `INVENTORY: ${items.length ? items.join(", ") : "(empty)"}`;
      },
      after: ["poi"],
      before: ["narrative"],
      apply: async (ctx, intent) => {
        if (!intent || intent.action === "none" || !intent.item) return { action: "none" };
        const items = [...((ctx.context.plugin_state.inventory as string[] | undefined) ?? [])];
        if (intent.action === "add") items.push(intent.item);
        else {
          const at = items.indexOf(intent.item);
          if (at === -1) return { action: "skipped", error: `no ${intent.item} to drop` };
          items.splice(at, 1);
        }
        await ctx.writer.putPluginState("inventory", items);
        return { action: intent.action === "add" ? "added" : "dropped" };
      },
    });
  },
});
