/**
 * QEMU command lines for the microVM (template boot and clones must describe the same machine),
 * and a small QMP client for the snapshot.
 */

import { connect, type Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";

export type Accel = "kvm" | "tcg";

export interface MachineSpec {
  kernel: string;
  initrd: string;
  memoryMb: number;
  accel: Accel;
  /** The guest RAM file: written by the template (shared), mapped copy-on-write by clones. */
  memFile: string;
  /** Unix socket QEMU listens on for the agent's virtio-serial port. */
  agentSocket: string;
  /** Host TSC frequency handed to a TCG guest. */
  tscKhz: number;
}

/**
 * TCG cannot calibrate the TSC against the microvm's PIT, so the kernel gets the frequency and the
 * delay loop preset; with KVM the kernel's own calibration works.
 */
export function kernelCmdline(accel: Accel, tscKhz: number): string {
  // rootfstype=ramfs: a tmpfs root would be capped at half the RAM, less than node and python need.
  const base = "console=ttyS0 quiet loglevel=0 panic=-1 rdinit=/init rootfstype=ramfs";
  // Under TCG the guest TSC is the host's: give the kernel the host's frequency so guest time flows right.
  return accel === "tcg" ? `${base} tsc_early_khz=${tscKhz} lpj=${tscKhz * 4} tsc=reliable` : base;
}

/** The host's TSC frequency in kHz (what a TCG guest's TSC counts at). */
export function hostTscKhz(cpuinfo: string): number {
  const m = /^cpu MHz\s*:\s*([0-9.]+)/m.exec(cpuinfo);
  const mhz = m ? Number(m[1]) : NaN;
  return Number.isFinite(mhz) && mhz > 100 ? Math.round(mhz * 1000) : 2_000_000;
}

export function machineArgs(spec: MachineSpec, opts: { template: boolean }): string[] {
  return [
    "-M",
    `microvm,x-option-roms=off,isa-serial=on,pit=on,pic=on,rtc=on,memory-backend=mem`,
    "-accel",
    spec.accel === "tcg" ? "tcg,tb-size=128" : "kvm",
    "-cpu",
    spec.accel === "kvm" ? "host" : "max",
    "-m",
    `${spec.memoryMb}M`,
    "-smp",
    "1",
    "-object",
    `memory-backend-file,id=mem,size=${spec.memoryMb}M,mem-path=${spec.memFile},share=${opts.template ? "on" : "off"}`,
    "-nodefaults",
    "-no-user-config",
    "-nographic",
    "-kernel",
    spec.kernel,
    "-initrd",
    spec.initrd,
    "-append",
    kernelCmdline(spec.accel, spec.tscKhz),
    "-serial",
    opts.template ? "stdio" : "null",
    "-device",
    "virtio-serial-device",
    "-chardev",
    `socket,id=agent,path=${spec.agentSocket},server=on,wait=off`,
    "-device",
    "virtserialport,chardev=agent,name=hexr",
    "-no-reboot",
  ];
}

/** QMP: one command at a time, JSON lines. */
export class Qmp {
  private buf = "";
  private waiters: Array<(msg: Record<string, unknown>) => void> = [];

  private constructor(private readonly sock: Socket) {
    sock.setEncoding("utf8");
    sock.on("data", (d: string) => {
      this.buf += d;
      let nl: number;
      while ((nl = this.buf.indexOf("\n")) !== -1) {
        const line = this.buf.slice(0, nl).trim();
        this.buf = this.buf.slice(nl + 1);
        if (!line) continue;
        const msg = JSON.parse(line) as Record<string, unknown>;
        if ("event" in msg) continue;
        this.waiters.shift()?.(msg);
      }
    });
  }

  static async open(path: string, timeoutMs = 10_000): Promise<Qmp> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const sock = await new Promise<Socket>((resolve, reject) => {
          const s = connect(path, () => resolve(s));
          s.once("error", reject);
        });
        const q = new Qmp(sock);
        await q.next(); // greeting
        await q.run("qmp_capabilities");
        return q;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await sleep(50);
      }
    }
  }

  private next(): Promise<Record<string, unknown>> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  async run(execute: string, args?: Record<string, unknown>): Promise<unknown> {
    const reply = this.next();
    this.sock.write(JSON.stringify({ execute, ...(args ? { arguments: args } : {}) }) + "\n");
    const msg = await reply;
    if ("error" in msg) throw new Error(`QMP ${execute}: ${JSON.stringify(msg["error"])}`);
    return msg["return"];
  }

  close(): void {
    this.sock.destroy();
  }
}
