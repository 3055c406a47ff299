import os from 'node:os';

/** The OS user, sent with submissions (`tutti-user`); undefined when it is not a name the server accepts. */
export function currentUser(): string | undefined {
  let name: string | undefined;
  try {
    name = os.userInfo().username;
  } catch {
    name = process.env.USER;
  }
  return name !== undefined && /^[A-Za-z0-9._@-]{1,64}$/.test(name) ? name : undefined;
}
