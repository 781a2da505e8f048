// What the page is showing, shared by the modules, and the hooks one module offers another
// (set once at start by app.js) so that they need not import each other in a circle.
export const state = {
  pack: null, conv: null, convCursor: null, olderCursor: null, attachments: [], run: null,
};

export const hooks = {
  openConversation: async (_id) => {},
  listConversations: async (_more) => {},
  startRun: async (_path, _body, _options) => false,
  decorateMessage: async (_node, _message) => {},
  afterRun: async () => {},
};
