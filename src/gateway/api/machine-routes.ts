import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { NotFoundError } from "../../errors.js";
import type { TypeBoxTypeProvider } from "../../http/typebox-provider.js";
import type { MachineCounts, MachineStore } from "../../store/machine-store.js";
import type { Fleet, Machine } from "../fleet.js";
import { type MachineViewBody, machineView } from "../machine-view.js";
import type { MachinesWatcher } from "../machines-watcher.js";
import type { SpeedModel } from "../speed-model.js";
import { ErrorBody, MachineList, MachineView } from "./schemas.js";

export interface MachineRoutesOptions {
  fleet: Fleet;
  machines: MachineStore;
  speeds: SpeedModel;
  /** The machines file's reload state, when there is one. */
  config?: MachinesWatcher["status"] | undefined;
  /** The machines as every gateway shows them (fleet-view.ts); their counts are read here. */
  shown: () => Promise<MachineViewBody[]>;
  /** Draining or resuming changed what may be placed (here and, told, on the other gateways). */
  onChange: () => void;
}

const NameParams = Type.Object({ name: Type.String() });

export async function machineRoutes(app: FastifyInstance, options: MachineRoutesOptions): Promise<void> {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const { fleet, speeds } = options;

  const view = (m: Machine, counts: Map<string, MachineCounts>) => machineView(m, speeds, counts.get(m.name));
  const mustGet = (name: string): Machine => {
    const machine = fleet.get(name);
    if (!machine) throw new NotFoundError(`no machine named ${name}`);
    return machine;
  };

  api.get(
    "/machines",
    {
      config: { access: "admin" },
      schema: {
        summary: "The fleet: each machine's state, load, history and measured speed",
        tags: ["machines"],
        response: { 200: Type.Ref(MachineList) },
      },
    },
    async () => {
      const [counts, shown] = await Promise.all([options.machines.counts(), options.shown()]);
      const machines = shown.map((m) => ({
        ...m,
        tasks_done: counts.get(m.name)?.done ?? 0,
        tasks_failed: counts.get(m.name)?.failed ?? 0,
      }));
      return { machines, config: options.config ?? null };
    },
  );

  const setDraining = (draining: boolean) => async (request: { params: { name: string } }) => {
    const machine = mustGet(request.params.name);
    await options.machines.setDraining(machine.name, draining);
    machine.setDraining(draining);
    app.log.info({ machine: machine.name }, draining ? "machine draining" : "machine resumed");
    options.onChange();
    return view(machine, await options.machines.counts());
  };
  const flagSchema = (summary: string) => ({
    summary,
    tags: ["machines"],
    params: NameParams,
    // 415: a text/plain or form body, which a web page could send cross-site (cross-site.ts).
    response: { 200: Type.Ref(MachineView), 404: Type.Ref(ErrorBody), 415: Type.Ref(ErrorBody) },
  });
  api.post(
    "/machines/:name/drain",
    {
      config: { access: "admin" },
      schema: flagSchema("Give the machine no new work; what it runs finishes (kept across restarts)"),
    },
    setDraining(true),
  );
  api.post(
    "/machines/:name/resume",
    { config: { access: "admin" }, schema: flagSchema("Undo a drain: the machine takes work again") },
    setDraining(false),
  );
}
