function D = dctmtx(n)
% DCTMTX  The n x n DCT-II matrix of MATLAB's Image Processing Toolbox, which Octave's image
% package lacks (its dctmtx only says "not yet implemented"). Written for percepmetric's
% reference script from the formula MATLAB documents for dctmtx:
%   D(1, j) = 1 / sqrt(n);  D(k, j) = sqrt(2 / n) * cos(pi * (2 j - 1) * (k - 1) / (2 n)), k > 1.
% D * A * D' is the 2-D DCT of an n x n block A (what dct2 gives).
  [j, k] = meshgrid(0:n - 1);
  D = sqrt(2 / n) * cos(pi * (2 * j + 1) .* k / (2 * n));
  D(1, :) = 1 / sqrt(n);
end
