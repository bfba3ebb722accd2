/**
 * What the benchmark reads about processes and the machine from `/proc`
 * (Linux only): CPU time, resident memory, load and limits.
 *
 * @module
 */

/** Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ, 100 on every Linux build). */
export const CLOCK_TICKS_PER_S = 100;

/** User + system CPU time of a process in milliseconds, or null when it is gone. */
export function cpuMs(pid: number): number | null {
  let stat: string;
  try {
    stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch {
    return null;
  }
  // The command name (field 2) may hold spaces and parentheses: split after the last ")".
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
  const ticks = Number(rest[11]) + Number(rest[12]);
  return (ticks * 1000) / CLOCK_TICKS_PER_S;
}

/** CPU time the whole machine spent busy (all cores, not idle or waiting on I/O), ms. */
export function machineBusyMs(): number | null {
  try {
    const line = Deno.readTextFileSync("/proc/stat").split("\n")[0];
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal …
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
    return ((total - v[3] - v[4]) * 1000) / CLOCK_TICKS_PER_S;
  } catch {
    return null;
  }
}

/** Memory figures of a process in KiB from `/proc/<pid>/status`. */
export interface MemoryKiB {
  /** Resident set size now. */
  rss: number;
  /** Peak resident set size ("high water mark"). */
  hwm: number;
}

/** Resident and peak memory of a process, or null when it is gone. */
export function memoryKiB(pid: number): MemoryKiB | null {
  let status: string;
  try {
    status = Deno.readTextFileSync(`/proc/${pid}/status`);
  } catch {
    return null;
  }
  const field = (name: string) => {
    const m = status.match(new RegExp(`^${name}:\\s+(\\d+) kB`, "m"));
    return m ? Number(m[1]) : 0;
  };
  return { rss: field("VmRSS"), hwm: field("VmHWM") };
}

/** Open file descriptors of a process (0 when it cannot be read). */
export function openFds(pid: number): number {
  try {
    let n = 0;
    for (const _ of Deno.readDirSync(`/proc/${pid}/fd`)) n++;
    return n;
  } catch {
    return 0;
  }
}

/** The 1, 5 and 15 minute load averages. */
export function loadAvg(): [number, number, number] {
  try {
    const [a, b, c] = Deno.readTextFileSync("/proc/loadavg").split(" ").map(Number);
    return [a, b, c];
  } catch {
    return [0, 0, 0];
  }
}

/** Soft and hard limits on open files of this process. */
export function fileLimit(): { soft: number; hard: number } {
  try {
    const line = Deno.readTextFileSync("/proc/self/limits").split("\n")
      .find((l) => l.startsWith("Max open files"));
    const [soft, hard] = (line ?? "").replace("Max open files", "").trim().split(/\s+/);
    const n = (v: string) => (v === "unlimited" ? Number.MAX_SAFE_INTEGER : Number(v));
    return { soft: n(soft), hard: n(hard) };
  } catch {
    return { soft: 1024, hard: 1024 };
  }
}

/** What the results record about the machine. */
export interface MachineInfo {
  nproc: number;
  cpu_model: string;
  mem_total_mib: number;
  kernel: string;
  deno: string;
  v8: string;
  nofile_hard: number;
  loadavg_start: [number, number, number];
}

/** Describe the machine the benchmark runs on. */
export function machineInfo(): MachineInfo {
  const read = (path: string) => {
    try {
      return Deno.readTextFileSync(path);
    } catch {
      return "";
    }
  };
  const cpuinfo = read("/proc/cpuinfo");
  const model = cpuinfo.match(/^model name\s*:\s*(.+)$/m)?.[1]?.trim() ?? "unknown";
  const memKiB = Number(read("/proc/meminfo").match(/^MemTotal:\s+(\d+)/m)?.[1] ?? 0);
  return {
    nproc: navigator.hardwareConcurrency,
    cpu_model: model,
    mem_total_mib: Math.round(memKiB / 1024),
    kernel: read("/proc/sys/kernel/osrelease").trim(),
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    nofile_hard: fileLimit().hard,
    loadavg_start: loadAvg(),
  };
}
