function [g_all, vv_all] = vifsub_est_m(org, dist, subbands, M)
% Case shim: vifvec.m calls vifsub_est_m, the release ships vifsub_est_M.m;
% MATLAB on a case-insensitive file system finds it, Octave on Linux does not.
[g_all, vv_all] = vifsub_est_M(org, dist, subbands, M);
end
