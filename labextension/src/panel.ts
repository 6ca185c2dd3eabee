/**
 * The session panel (right sidebar): where the session stands, the last restore, and the
 * journaled executions newest first, each with Diff (against now) and Check out.
 *
 * Testability contract: the root has id `persistent-kernel-panel`; a cell's row has
 * `data-pk-cell="<execution count>"` (an event's row `data-pk-event="<seq>"`); its
 * buttons have `data-pk-action="diff"` and `data-pk-action="checkout"`; the confirm
 * dialog is JupyterLab's own (its accept button is the standard one).
 */

import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { IDiffRow, IExecutionRow, SessionConnection } from './connection';
import { statusText } from './status';

export const PANEL_ID = 'persistent-kernel-panel';

function el<K extends keyof HTMLElementTagNameMap>(tag: K, className?: string, text?: string): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

export function humanBytes(n: number): string {
  let size = n;
  for (const unit of ['B', 'KB', 'MB', 'GB']) {
    if (size < 1000 || unit === 'GB') {
      return unit === 'B' ? `${size.toFixed(0)} B` : `${size.toFixed(1)} ${unit}`;
    }
    size /= 1000;
  }
  return `${n} B`;
}

function clock(timestamp: number): string {
  return timestamp ? new Date(timestamp * 1000).toLocaleTimeString() : '-';
}

function took(seconds: number | null): string {
  if (seconds === null || seconds === undefined) {
    return '-';
  }
  return seconds < 1 ? `${Math.round(seconds * 1000)} ms` : `${seconds.toFixed(1)} s`;
}

export class SessionPanel extends Widget {
  constructor(connection: SessionConnection) {
    super();
    this.id = PANEL_ID;
    this.addClass('pk-panel');
    this.title.caption = 'Persistent session';
    this.title.label = 'Session';
    this._connection = connection;
    this._header = el('div', 'pk-header');
    this._notice = el('div', 'pk-notice');
    this._rows = el('div', 'pk-rows');
    this.node.append(this._header, this._notice, this._rows);
    connection.stateChanged.connect((_sender, state) => {
      if (state.kernelId !== this._kernelId) {
        this._kernelId = state.kernelId;
        this._diffs.clear(); // another kernel's answers
      }
      this._renderHeader();
    });
    connection.historyChanged.connect(() => this._renderRows());
    this._renderHeader();
    this._renderRows();
  }

  /** Refresh when shown: the rows may have changed while the panel was hidden. */
  protected onAfterShow(): void {
    void this._connection.requestHistory();
  }

  private _renderHeader(): void {
    const state = this._connection.state;
    this._header.replaceChildren();
    if (!state.status) {
      this._header.append(el('p', 'pk-muted', 'This notebook does not run a persistent kernel (Python 3 (persistent)).'));
      return;
    }
    const line = el('p', `pk-state pk-state-${state.status.state}`, statusText(state));
    this._header.append(line);
    if (state.status.reason) {
      this._header.append(el('p', 'pk-reason', state.status.reason));
    }
    if (state.restore) {
      const restore = el('details', 'pk-restore');
      restore.append(el('summary', undefined, state.restore.summary));
      restore.append(el('pre', undefined, JSON.stringify(state.restore.details, null, 1)));
      this._header.append(restore);
    }
  }

  private _renderRows(): void {
    const rows = this._connection.history;
    this._rows.replaceChildren();
    if (!rows.length) {
      if (this._connection.connected) {
        this._rows.append(el('p', 'pk-muted', 'No executions journaled yet.'));
      }
      return;
    }
    const newest = rows.find(row => row.execution_count !== null);
    for (const row of rows) {
      this._rows.append(this._row(row, newest));
    }
  }

  private _row(row: IExecutionRow, newest: IExecutionRow | undefined): HTMLElement {
    const node = el('div', `pk-row pk-status-${row.status}`);
    if (row.execution_count !== null) {
      node.dataset.pkCell = String(row.execution_count);
    } else {
      node.dataset.pkEvent = String(row.seq);
    }
    const top = el('div', 'pk-row-top');
    top.append(el('span', 'pk-label', row.label), el('span', 'pk-when', `${clock(row.started_at)} · ${took(row.duration)}`), el('span', 'pk-row-status', row.status));
    node.append(top);
    node.append(el('code', 'pk-what', row.what || ' '));
    const facts: string[] = [];
    if (row.changed.length) {
      facts.push(`changed ${row.changed.join(', ')}`);
    }
    if (row.stored.length) {
      facts.push(`stored ${row.stored.join(', ')} (${humanBytes(row.stored_bytes)})`);
    }
    if (row.recompute.length) {
      facts.push(`recomputed after a restart: ${row.recompute.join(', ')}`);
    }
    if (facts.length) {
      node.append(el('div', 'pk-facts', facts.join(' · ')));
    }
    if (row.execution_count !== null) {
      const count = row.execution_count;
      const buttons = el('div', 'pk-buttons');
      const diff = el('button', 'jp-Button jp-mod-minimal pk-button', 'Diff');
      diff.dataset.pkAction = 'diff';
      diff.title = `The variables that differ between after cell [${count}] and now`;
      diff.addEventListener('click', () => void this._diff(count, node));
      const checkout = el('button', 'jp-Button jp-mod-minimal pk-button', 'Check out');
      checkout.dataset.pkAction = 'checkout';
      checkout.title = `Make the namespace what it was after cell [${count}]`;
      checkout.addEventListener('click', () => void this._checkout(count, newest?.execution_count ?? null));
      buttons.append(diff, checkout);
      node.append(buttons);
      const shown = this._diffs.get(count);
      if (shown) {
        node.append(shown); // an open diff survives the rows being drawn again
      }
    }
    return node;
  }

  private async _diff(cell: number, row: HTMLElement): Promise<void> {
    row.querySelector('.pk-diff')?.remove();
    const box = el('div', 'pk-diff', 'Comparing…');
    this._diffs.set(cell, box);
    row.append(box);
    const reply = await this._connection.requestDiff(cell);
    box.replaceChildren();
    if (reply.error) {
      box.textContent = reply.error;
      return;
    }
    const rows: IDiffRow[] = reply.rows ?? [];
    if (!rows.length) {
      box.textContent = `Nothing differs between after cell [${cell}] and now.`;
      return;
    }
    const table = el('table', 'pk-diff-table');
    const head = el('tr');
    for (const title of ['name', 'change', 'after cell', 'now']) {
      head.append(el('th', undefined, title));
    }
    table.append(head);
    for (const diff of rows) {
      const tr = el('tr');
      tr.dataset.pkName = diff.name;
      tr.append(el('td', undefined, diff.name), el('td', undefined, diff.change), el('td', undefined, diff.before), el('td', undefined, diff.after));
      table.append(tr);
    }
    box.append(table);
  }

  private async _checkout(cell: number, newest: number | null): Promise<void> {
    const body = el('div');
    body.append(
      el('p', undefined, `The namespace becomes what it was after cell [${cell}]: stored values are loaded, only what could not be stored is recomputed.`),
      el('p', undefined, 'Outputs on screen stay. The checkout is journaled like %persist checkout, so checking out a later cell goes forward again.')
    );
    const result = await showDialog({
      title: `Check out cell [${cell}]?`,
      body: new Widget({ node: body }),
      buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Check out' })]
    });
    if (!result.button.accept) {
      return;
    }
    this._notice.replaceChildren(el('p', 'pk-muted', `Checking out cell [${cell}]…`));
    const said = await this._connection.checkout(cell);
    this._notice.replaceChildren();
    const done = el('div', 'pk-checked-out');
    done.dataset.pkCheckedOut = String(cell);
    done.append(el('p', undefined, said || `Checked out cell [${cell}].`));
    if (newest !== null && newest > cell) {
      done.append(el('p', 'pk-muted', `To go forward again, check out a later cell: [${newest}] was the newest before this checkout.`));
    }
    this._notice.append(done);
  }

  private _connection: SessionConnection;
  private _diffs = new Map<number, HTMLElement>(); // cell -> its diff, shown until the kernel changes
  private _kernelId: string | null = null;
  private _header: HTMLElement;
  private _notice: HTMLElement;
  private _rows: HTMLElement;
}
