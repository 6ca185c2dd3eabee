/**
 * The status item: `Persisted · 4 s ago`, `Writing 1.2 GB…`, `Paused`, `Not persisting: <reason>`.
 * Empty (hidden) on kernels that are not persistent. A click opens the session panel,
 * where the reason is spelled out.
 */

import { Widget } from '@lumino/widgets';

import { IState, SessionConnection } from './connection';

export const STATUS_ID = 'persistent-kernel-status';

export function ageText(seconds: number): string {
  if (seconds < 5) {
    return 'just now';
  }
  if (seconds < 60) {
    return `${Math.floor(seconds)} s ago`;
  }
  if (seconds < 3600) {
    return `${Math.floor(seconds / 60)} min ago`;
  }
  return `${Math.floor(seconds / 3600)} h ago`;
}

/** The words of the status item for a state (empty: not a persistent kernel). */
export function statusText(state: IState, now: number = Date.now() / 1000): string {
  const status = state.status;
  if (!status) {
    return '';
  }
  if (status.state === 'persisted' && status.last_commit_at) {
    return `Persisted · ${ageText(Math.max(0, now - state.clockOffset - status.last_commit_at))}`;
  }
  return status.text;
}

export class StatusItem extends Widget {
  constructor(connection: SessionConnection, onClick: () => void) {
    super();
    this.id = STATUS_ID;
    this.addClass('pk-status');
    this._connection = connection;
    this.node.title = 'persistent kernel: click for the session panel';
    this.node.addEventListener('click', onClick);
    connection.stateChanged.connect(() => this.refresh());
    this._timer = window.setInterval(() => this.refresh(), 1000);
    this.refresh();
  }

  refresh(): void {
    const state = this._connection.state;
    const text = statusText(state);
    this.node.textContent = text;
    this.node.dataset.pkState = state.status?.state ?? 'none';
    if (state.status?.reason) {
      this.node.title = `${state.status.text} — click for the session panel`;
    }
    this.setHidden(!text);
  }

  dispose(): void {
    window.clearInterval(this._timer);
    super.dispose();
  }

  private _connection: SessionConnection;
  private _timer: number;
}
