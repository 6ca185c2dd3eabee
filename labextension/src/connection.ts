/**
 * The comm to the active notebook's kernel (target `persistent_kernel.session`).
 *
 * It follows the notebook: a new kernel, a restart (JupyterLab's automatic one after a
 * crash too), another notebook made current. Only a persistent kernel (its banner says
 * `persistent_kernel`) gets a comm; on any other kernel nothing is opened and nothing shown.
 */

import { ISessionContext } from '@jupyterlab/apputils';
import { Kernel, KernelMessage } from '@jupyterlab/services';
import { ISignal, Signal } from '@lumino/signaling';

export const TARGET = 'persistent_kernel.session';

/** What the status bar says (the kernel's `panel.status_of`). */
export interface IStatus {
  state: 'persisted' | 'writing' | 'paused' | 'off';
  text: string;
  reason: string | null;
  last_commit_at: number | null;
  pending_bytes: number;
  next_seq: number;
  sent_at: number;
}

export interface IRestore {
  summary: string;
  finished_at: number;
  details: { [key: string]: unknown };
}

/** One journaled execution (the kernel's `journalview.ExecutionRow`). */
export interface IExecutionRow {
  seq: number;
  label: string;
  kind: string;
  execution_count: number | null;
  started_at: number;
  duration: number | null;
  status: string;
  changed: string[];
  stored: string[];
  stored_bytes: number;
  recompute: string[];
  what: string;
}

export interface IDiffRow {
  name: string;
  change: string;
  before: string;
  after: string;
}

export interface IState {
  status: IStatus | null;
  restore: IRestore | null;
  kernelId: string | null;
  /** Browser clock minus the kernel's (seconds), for the age of the last commit. */
  clockOffset: number;
}

const POLL_MS = 4000;

export class SessionConnection {
  constructor() {
    this._poll = window.setInterval(() => this._pollState(), POLL_MS);
  }

  get stateChanged(): ISignal<this, IState> {
    return this._stateChanged;
  }

  get historyChanged(): ISignal<this, IExecutionRow[]> {
    return this._historyChanged;
  }

  get state(): IState {
    return this._state;
  }

  get history(): IExecutionRow[] {
    return this._history;
  }

  /** Whether the current notebook runs a persistent kernel with an open comm. */
  get connected(): boolean {
    return this._comm !== null && !this._comm.isDisposed;
  }

  get kernel(): Kernel.IKernelConnection | null {
    return this._context?.session?.kernel ?? null;
  }

  /** Follow this notebook's session (null: no notebook is current). */
  follow(context: ISessionContext | null): void {
    if (context === this._context) {
      return;
    }
    if (this._context) {
      this._context.kernelChanged.disconnect(this._onKernelChanged, this);
      this._context.statusChanged.disconnect(this._onStatus, this);
    }
    this._context = context;
    this._closeComm();
    if (context) {
      context.kernelChanged.connect(this._onKernelChanged, this);
      context.statusChanged.connect(this._onStatus, this);
      void context.ready.then(() => this._connect());
    } else {
      this._setState({ status: null, restore: null, kernelId: null, clockOffset: 0 });
      this._setHistory([]);
    }
  }

  async requestHistory(limit = 50): Promise<void> {
    const reply = await this._ask({ request: 'history', limit });
    if (reply && Array.isArray(reply.rows)) {
      this._setHistory(reply.rows as IExecutionRow[]);
    }
  }

  async requestDiff(cell: number): Promise<{ rows?: IDiffRow[]; error?: string }> {
    const reply = await this._ask({ request: 'diff', cell });
    if (!reply) {
      return { error: 'the kernel did not answer' };
    }
    return reply as { rows?: IDiffRow[]; error?: string };
  }

  /** `%persist checkout N`, executed like a cell (so it is journaled like one); its printed text. */
  async checkout(cell: number): Promise<string> {
    const kernel = this.kernel;
    if (!kernel) {
      return 'No kernel.';
    }
    let text = '';
    const future = kernel.requestExecute({ code: `%persist checkout ${cell}`, silent: false, store_history: true, stop_on_error: false });
    future.onIOPub = msg => {
      if (KernelMessage.isStreamMsg(msg)) {
        text += msg.content.text;
      } else if (KernelMessage.isErrorMsg(msg)) {
        text += `${msg.content.ename}: ${msg.content.evalue}`;
      }
    };
    await future.done;
    await this.requestHistory();
    return text.trim();
  }

  dispose(): void {
    window.clearInterval(this._poll);
    this.follow(null);
  }

  private _onKernelChanged(): void {
    this._closeComm();
    void this._connect();
  }

  private _onStatus(_context: ISessionContext, status: Kernel.Status): void {
    if (status === 'restarting' || status === 'autorestarting' || status === 'dead') {
      this._closeComm();
      if (this._state.status) {
        this._setState({ ...this._state, status: { ...this._state.status, state: 'off', text: 'Not persisting: the kernel is restarting', reason: 'the kernel is restarting' } });
      }
    } else if (status === 'idle' && !this.connected) {
      void this._connect();
    }
  }

  private async _connect(): Promise<void> {
    const kernel = this.kernel;
    if (!kernel || this.connected || this._connecting === kernel) {
      return;
    }
    this._connecting = kernel;
    try {
      const info = await kernel.info;
      if (kernel !== this.kernel || !info.banner.includes('persistent_kernel')) {
        if (kernel === this.kernel) {
          this._setState({ status: null, restore: null, kernelId: kernel.id, clockOffset: 0 });
          this._setHistory([]);
        }
        return;
      }
      const comm = kernel.createComm(TARGET);
      comm.onMsg = msg => this._received(msg.content.data as { [key: string]: unknown });
      comm.onClose = () => {
        if (this._comm === comm) {
          this._comm = null;
        }
      };
      this._comm = comm;
      comm.open({});
    } catch (error) {
      console.warn('persistent-kernel: could not open the session comm', error);
    } finally {
      this._connecting = null;
    }
  }

  private _closeComm(): void {
    const comm = this._comm;
    this._comm = null;
    for (const pending of this._pending.values()) {
      pending(null);
    }
    this._pending.clear();
    if (comm && !comm.isDisposed) {
      try {
        comm.close();
      } catch {
        // a dead kernel's comm: nothing to tell it
      }
    }
  }

  private _received(data: { [key: string]: unknown }): void {
    const id = data.request_id as string | undefined;
    if (data.type === 'state') {
      const status = data.status as IStatus;
      const offset = status && status.sent_at ? Date.now() / 1000 - status.sent_at : 0;
      const changed = !this._state.status || this._state.status.next_seq !== status.next_seq;
      this._setState({ status, restore: (data.restore as IRestore) ?? null, kernelId: this.kernel?.id ?? null, clockOffset: offset });
      if (changed) {
        void this.requestHistory();
      }
    }
    if (id && this._pending.has(id)) {
      const resolve = this._pending.get(id)!;
      this._pending.delete(id);
      resolve(data);
    }
  }

  private _ask(request: { [key: string]: unknown }): Promise<{ [key: string]: unknown } | null> {
    const comm = this._comm;
    if (!comm || comm.isDisposed) {
      return Promise.resolve(null);
    }
    const id = `pk-${++this._counter}`;
    return new Promise(resolve => {
      this._pending.set(id, resolve);
      try {
        comm.send({ ...request, request_id: id } as any);
      } catch {
        this._pending.delete(id);
        resolve(null);
      }
    });
  }

  private _pollState(): void {
    // The age of the last commit is counted here; the kernel is asked again only for
    // what it alone knows (a large write landing, a problem), and never while it is busy.
    if (this.connected && this._context?.session?.kernel?.status === 'idle' && this._pending.size === 0) {
      void this._ask({ request: 'state' });
    }
  }

  private _setState(state: IState): void {
    this._state = state;
    this._stateChanged.emit(state);
  }

  private _setHistory(rows: IExecutionRow[]): void {
    this._history = rows;
    this._historyChanged.emit(rows);
  }

  private _context: ISessionContext | null = null;
  private _comm: Kernel.IComm | null = null;
  private _connecting: Kernel.IKernelConnection | null = null;
  private _pending = new Map<string, (data: { [key: string]: unknown } | null) => void>();
  private _counter = 0;
  private _poll: number;
  private _state: IState = { status: null, restore: null, kernelId: null, clockOffset: 0 };
  private _history: IExecutionRow[] = [];
  private _stateChanged = new Signal<this, IState>(this);
  private _historyChanged = new Signal<this, IExecutionRow[]>(this);
}
