/**
 * persistent-kernel: see a persistent_kernel session in JupyterLab 4 and Notebook 7.
 *
 * The plugin wires three things to the current notebook's kernel (``connection``):
 * the session panel in the right sidebar (``panel``), the status item (``status``; in
 * the status bar where there is one, Notebook 7's header otherwise), and, after a
 * restore, a notification with the summary and a link to the panel.
 */

import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, Notification } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { IStatusBar } from '@jupyterlab/statusbar';

import { SessionConnection } from './connection';
import { PANEL_ID, SessionPanel } from './panel';
import { StatusItem } from './status';

const OPEN_PANEL = 'persistent-kernel:open-panel';

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'persistent-kernel:plugin',
  description: 'The persistent kernel session panel, status item and restore notification.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ICommandPalette, IStatusBar],
  activate: (app: JupyterFrontEnd, tracker: INotebookTracker, palette: ICommandPalette | null, statusBar: IStatusBar | null) => {
    const connection = new SessionConnection();
    const panel = new SessionPanel(connection);
    app.shell.add(panel, 'right', { rank: 900 });

    app.commands.addCommand(OPEN_PANEL, {
      label: 'Show the persistent session panel',
      caption: 'The journaled executions of this notebook’s persistent kernel: diff, check out, status',
      execute: () => {
        app.shell.activateById(PANEL_ID);
      }
    });
    palette?.addItem({ command: OPEN_PANEL, category: 'Persistent kernel' });

    const status = new StatusItem(connection, () => void app.commands.execute(OPEN_PANEL));
    if (statusBar) {
      statusBar.registerStatusItem('persistent-kernel:status', {
        item: status,
        align: 'left',
        rank: 5,
        isActive: () => connection.state.status !== null
      });
      connection.stateChanged.connect(() => status.refresh());
    } else {
      app.shell.add(status, 'top', { rank: 1000 }); // Notebook 7 has no status bar: its header
    }

    // One notification per restore (a kernel id and when its restore finished).
    const told = new Set<string>();
    connection.stateChanged.connect((_sender, state) => {
      const restore = state.restore;
      if (!restore || !state.kernelId) {
        return;
      }
      const key = `${state.kernelId}:${restore.finished_at}`;
      if (told.has(key)) {
        return;
      }
      told.add(key);
      Notification.info(restore.summary, {
        autoClose: 15000,
        actions: [{ label: 'Details', caption: 'Open the session panel', callback: () => void app.commands.execute(OPEN_PANEL) }]
      });
    });

    const follow = () => connection.follow(tracker.currentWidget?.sessionContext ?? null);
    tracker.currentChanged.connect(follow);
    follow();
  }
};

export default plugin;
