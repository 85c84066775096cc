function B = imresize(A, arg, method)
% MATLAB-semantics imresize for double matrices (written for the percepmetric reference runs;
% shadows Octave's image-package imresize, which does not renormalise its weights).
% Follows MATLAB's documented algorithm: separable kernel ('bicubic' Keys a=-0.5, default, or
% 'bilinear' triangle), antialiasing (kernel stretched by 1/scale) when shrinking, weights of
% each output pixel divided by their sum, out-of-range taps mirrored (symmetric border,
% edge repeated), the dimension with the smaller scale resized first.
% imresize(A, s): output ceil(s*size), scale s on both axes; imresize(A, [r c]): scale out/in.
if nargin < 3, method = 'bicubic'; end
insz = [size(A,1) size(A,2)];
if isscalar(arg)
  scale = [arg arg]; outsz = ceil(arg * insz);
else
  outsz = arg(:)'; scale = outsz ./ insz;
end
A = double(A);
[~, order] = sort(scale);
for d = order
  W = resize_matrix(insz(d), outsz(d), scale(d), method);
  if d == 1
    A = reshape(W * reshape(A, insz(1), []), [outsz(1), size(A,2), size(A,3)]);
  else
    sz = size(A); sz(end+1:3) = 1;
    T = permute(A, [2 1 3]);
    T = reshape(W * reshape(T, insz(2), []), [outsz(2), sz(1), sz(3)]);
    A = permute(T, [2 1 3]);
  end
end
B = A;
end

function W = resize_matrix(n_in, n_out, s, method)
if strcmp(method, 'bilinear')
  k = @(x) (1 - abs(x)) .* (abs(x) <= 1); width = 2;
else
  k = @(x) (1.5*abs(x).^3 - 2.5*abs(x).^2 + 1) .* (abs(x) <= 1) + ...
           (-0.5*abs(x).^3 + 2.5*abs(x).^2 - 4*abs(x) + 2) .* (abs(x) > 1 & abs(x) <= 2);
  width = 4;
end
if s < 1
  h = @(x) s * k(s * x); kw = width / s;
else
  h = k; kw = width;
end
x = (1:n_out)';
u = x / s + 0.5 * (1 - 1 / s);
left = floor(u - kw / 2);
P = ceil(kw) + 2;
idx = left + (0:P-1);
w = h(u - idx);
w = w ./ sum(w, 2);
mirror = [1:n_in, n_in:-1:1];
idx = mirror(mod(idx - 1, numel(mirror)) + 1);
W = zeros(n_out, n_in);
for j = 1:P
  W = W + full(sparse(x, idx(:, j), w(:, j), n_out, n_in));
end
end
